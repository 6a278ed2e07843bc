"""Unit tests (no root) for the pure parts of networking: IPAM, legacy links and the sandbox's
files, port specs and NetworkSettings shape."""
import ipaddress

import pytest

from drivers import errdefs, ipam, links, sandbox


# ---- IPAM ----------------------------------------------------------------------------------

def test_default_pools_start_with_docker0s_subnet_then_cut_192_168_into_slash_20s():
    pools = list(ipam.default_pools())
    assert str(pools[0]) == "172.17.0.0/16" and str(pools[14]) == "172.31.0.0/16"
    assert str(pools[15]) == "192.168.0.0/20" and str(pools[-1]) == "192.168.240.0/20"


def test_pick_subnet_skips_networks_and_host_routes_that_overlap():
    taken = [ipaddress.ip_network("172.17.0.0/16"), ipaddress.ip_network("172.18.5.0/24")]
    assert str(ipam.pick_subnet(taken)) == "172.19.0.0/16"


def test_pick_subnet_fails_clearly_when_everything_overlaps():
    with pytest.raises(errdefs.Forbidden) as err:
        ipam.pick_subnet([ipaddress.ip_network("0.0.0.0/0")])
    assert "non-overlapping IPv4 address pool" in str(err.value)


def test_addresses_never_the_network_gateway_or_broadcast():
    pool = ipam.AddressPool("10.9.0.0/30")
    assert str(pool.gateway) == "10.9.0.1"
    assert pool.allocate() == "10.9.0.2"
    with pytest.raises(errdefs.Forbidden) as err:
        pool.allocate()
    assert "no available IPv4 addresses" in str(err.value)


def test_first_free_address_is_reused_after_release():
    pool = ipam.AddressPool("172.17.0.0/16")
    assert [pool.allocate() for _ in range(3)] == ["172.17.0.2", "172.17.0.3", "172.17.0.4"]
    pool.release("172.17.0.3")
    assert pool.allocate() == "172.17.0.3"


def test_reserved_addresses_survive_a_restart_by_reservation():
    pool = ipam.AddressPool("172.17.0.0/16")
    pool.reserve("172.17.0.2")
    assert pool.allocate() == "172.17.0.3"
    pool.release("172.17.0.2")  # what was reserved is handed out once it is given back
    assert pool.allocate() == "172.17.0.2"


def test_ip_range_narrows_dynamic_addresses_but_not_static_ones():
    pool = ipam.AddressPool("10.1.0.0/16", gateway="10.1.0.254", ip_range="10.1.5.0/24")
    assert pool.allocate() == "10.1.5.1"
    assert pool.allocate("10.1.0.7") == "10.1.0.7"


@pytest.mark.parametrize("preferred, kind, text", [
    ("10.2.0.1", errdefs.Forbidden, "Address already in use"),        # the gateway
    ("10.3.0.5", errdefs.InvalidParameter, "does not belong to any of this network's subnets"),
    ("nonsense", errdefs.InvalidParameter, "invalid IPv4 address"),
])
def test_a_requested_address_is_checked(preferred, kind, text):
    pool = ipam.AddressPool("10.2.0.0/24")
    with pytest.raises(kind) as err:
        pool.allocate(preferred)
    assert text in str(err.value)


def test_a_requested_address_in_use_is_refused():
    pool = ipam.AddressPool("10.2.0.0/24")
    pool.allocate("10.2.0.9")
    with pytest.raises(errdefs.Forbidden):
        pool.allocate("10.2.0.9")


def test_gateway_and_range_outside_the_subnet_are_refused():
    with pytest.raises(errdefs.InvalidParameter):
        ipam.AddressPool("10.4.0.0/24", gateway="10.5.0.1")
    with pytest.raises(errdefs.InvalidParameter):
        ipam.AddressPool("10.4.0.0/24", ip_range="10.4.0.0/16")


def test_ipv6_pools_hand_out_addresses_too():
    pool = ipam.AddressPool("fd00:1::/64")
    assert str(pool.gateway) == "fd00:1::1" and pool.allocate() == "fd00:1::2"


def test_mac_is_derived_from_the_address_like_dockerd():
    assert ipam.mac_for_ip("172.17.0.2") == "02:42:ac:11:00:02"


# ---- links ---------------------------------------------------------------------------------

def link(ports=((80, "tcp"),), env=("DB_PASSWORD=x", "PATH=/bin", "HOME=/root")):
    return links.Link("db-1", "/web", "172.17.0.3", "c0ffee", "/postgres", list(env), list(ports))


def test_link_env_names_the_child_like_docker_1_8():
    env = links.to_env(link())
    assert env == ["DB_1_PORT=tcp://172.17.0.3:80", "DB_1_PORT_80_TCP=tcp://172.17.0.3:80",
                   "DB_1_PORT_80_TCP_ADDR=172.17.0.3", "DB_1_PORT_80_TCP_PORT=80",
                   "DB_1_PORT_80_TCP_PROTO=tcp", "DB_1_NAME=/web/db-1", "DB_1_ENV_DB_PASSWORD=x"]


def test_link_env_describes_a_run_of_ports_by_its_ends():
    env = links.to_env(link(ports=[(8000, "tcp"), (8001, "tcp"), (8002, "tcp")], env=()))
    assert "DB_1_PORT_8000_TCP_START=tcp://172.17.0.3:8000" in env
    assert "DB_1_PORT_8000_TCP_END=tcp://172.17.0.3:8002" in env
    assert "DB_1_PORT_8000_TCP_PORT_END=8002" in env
    assert "DB_1_PORT_8001_TCP=tcp://172.17.0.3:8001" in env


def test_exposed_ports_sort_by_number_with_tcp_first():
    config = {"ExposedPorts": {"53/udp": {}, "80/tcp": {}, "53/tcp": {}}}
    assert links.exposed_ports(config) == [(53, "tcp"), (53, "udp"), (80, "tcp")]


def test_hosts_entry_lists_alias_hostname_and_name():
    assert links.hosts_entry(link()) == "172.17.0.3\tdb-1 c0ffee postgres\n"


@pytest.mark.parametrize("text, expected", [
    ("web:w", ("web", "w")), ("web", ("web", "web")), ("/web:/app/w", ("web", "w"))])
def test_parse_link_accepts_the_cli_and_stored_forms(text, expected):
    assert links.parse_link(text) == expected


# ---- sandbox: files, ports, settings -------------------------------------------------------

def test_resolv_conf_for_a_user_network_points_at_the_embedded_server(monkeypatch):
    monkeypatch.setattr(sandbox, "host_resolv_conf", lambda: "nameserver 10.0.0.1\nsearch corp\n")
    text = sandbox.resolv_conf({}, [], [], [], "embedded")
    assert text == "nameserver 127.0.0.11\nsearch corp\noptions ndots:0\n"


def test_resolv_conf_on_the_default_bridge_drops_loopback_servers(monkeypatch):
    monkeypatch.setattr(sandbox, "host_resolv_conf", lambda: "nameserver 127.0.0.53\nnameserver 9.9.9.9\n")
    assert sandbox.resolv_conf({}, [], [], [], "") == "nameserver 9.9.9.9\n"
    assert sandbox.resolv_conf({"Dns": ["1.1.1.1"]}, [], [], [], "") == "nameserver 1.1.1.1\n"


def test_upstream_servers_keep_loopback_and_skip_garbage(monkeypatch):
    monkeypatch.setattr(sandbox, "host_resolv_conf", lambda: "nameserver 127.0.0.1\nnameserver junk\n")
    assert sandbox.upstream_servers({}, []) == ["127.0.0.1"]
    assert sandbox.upstream_servers({}, ["10.1.1.1"]) == ["10.1.1.1"]


def test_hosts_file_has_own_address_links_and_extra_hosts():
    text = sandbox.hosts_file([("172.17.0.2", ["abc"])], ["172.17.0.3\tdb\n"], ["gw:10.0.0.1"], False)
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert text.endswith("172.17.0.2\tabc\n172.17.0.3\tdb\n10.0.0.1\tgw\n")


def test_port_bindings_with_publish_all_add_an_ephemeral_binding_per_exposed_port():
    config = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}
    host = {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            "PublishAllPorts": True}
    assert sandbox.port_bindings(config, host) == [
        sandbox.PortBinding("udp", 53, "", (0, 0)),
        sandbox.PortBinding("tcp", 80, "127.0.0.1", (8080, 8080))]


@pytest.mark.parametrize("bindings, text", [
    ({"x/tcp": [{}]}, 'invalid port specification: "x/tcp"'),
    ({"80/icmp": [{}]}, "invalid proto icmp"),
    ({"80/tcp": [{"HostPort": "99999"}]}, "invalid hostPort: 99999"),
    ({"80/tcp": [{"HostIp": "not-an-ip"}]}, "invalid IP address: not-an-ip"),
])
def test_bad_port_bindings_are_refused(bindings, text):
    with pytest.raises(errdefs.InvalidParameter) as err:
        sandbox.port_bindings({}, {"PortBindings": bindings})
    assert text in str(err.value)


def test_host_port_ranges_parse():
    assert sandbox.parse_host_port("8000-8010") == (8000, 8010)
    assert sandbox.parse_host_port("") == (0, 0)


def test_network_settings_repeat_the_default_bridge_at_the_top_level():
    bridge = dict(sandbox.endpoint_settings(), IPAddress="172.17.0.2", IPPrefixLen=16,
                  Gateway="172.17.0.1", MacAddress="02:42:ac:11:00:02", EndpointID="e")
    settings = sandbox.network_settings({"bridge": bridge}, {"80/tcp": None}, "/proc/1/ns/net", bridge)
    assert settings["IPAddress"] == "172.17.0.2" and settings["Gateway"] == "172.17.0.1"
    assert settings["Networks"]["bridge"] is bridge and settings["Ports"] == {"80/tcp": None}


# (typed request bodies: tests/test_apitypes.py)
