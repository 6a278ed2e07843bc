"""drivers/netlink.py: rtnetlink requests, cross-checked with iproute2 and proven with ping.

Run as root. Every test works in network namespaces it makes itself (`ip netns add
pyd-nl-<random>`, deleted in the fixture's teardown) and hands their /var/run/netns file to
Handle: the namespace pytest runs in is never changed. The only traffic is between those
namespaces, on documentation addresses (192.0.2.0/24, 198.51.100.0/24, fd00::/8).
"""
import errno
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest

from drivers import netlink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

MAC = "02:42:c0:00:02:01"


@pytest.fixture
def make_netns():
    """Makes named network namespaces; returns their names; deletes them afterwards."""
    made = []

    def make():
        name = "pyd-nl-%s" % uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def netns(make_netns):
    return make_netns()


def path(name):
    return "/var/run/netns/" + name


def ip(name, *args):
    """`ip -n NAME ARGS...`, its stdout; CalledProcessError when ip fails."""
    return subprocess.run(["ip", "-n", name] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=True, universal_newlines=True).stdout


def ip_json(name, *args):
    return json.loads(ip(name, "-j", *args))


def ping(name, address):
    """One ping from inside namespace `name`; True when it was answered."""
    command = ["ping"] if shutil.which("ping") else ["busybox", "ping"]
    flag = "-6" if ":" in address else "-4"
    return subprocess.run(["ip", "netns", "exec", name] + command + [flag, "-c1", "-W1", address],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def test_bridge_create_up_mtu_mac_read_back(netns):
    with netlink.Handle(path(netns)) as handle:
        handle.add_bridge("br-pyd", mtu=1400, mac=MAC)
        link = handle.link("br-pyd")
        assert link == {"name": "br-pyd", "index": link["index"], "mtu": 1400, "mac": MAC,
                        "master": 0, "kind": "bridge", "up": False}
        assert handle.link_index("br-pyd") == link["index"]
        handle.set_up("br-pyd")
        handle.set_mtu("br-pyd", 1300)
        handle.set_mac("br-pyd", "02:42:c0:00:02:fe")
        link = handle.link("br-pyd")
        assert (link["up"], link["mtu"], link["mac"]) == (True, 1300, "02:42:c0:00:02:fe")
        assert sorted(l["name"] for l in handle.links()) == ["br-pyd", "lo"]

        shown = ip_json(netns, "-d", "link", "show", "dev", "br-pyd")[0]
        assert shown["ifindex"] == link["index"]
        assert "UP" in shown["flags"] and shown["mtu"] == 1300
        assert shown["address"] == "02:42:c0:00:02:fe"
        assert shown["linkinfo"]["info_kind"] == "bridge"
        assert "mtu 1300" in ip(netns, "-o", "link", "show", "dev", "br-pyd")

        handle.set_down("br-pyd")
        assert not handle.link("br-pyd")["up"]
        assert "UP" not in ip_json(netns, "link", "show", "dev", "br-pyd")[0]["flags"]


def test_ipv4_address_with_broadcast_and_routes(netns):
    with netlink.Handle(path(netns)) as handle:
        handle.add_bridge("br-pyd")
        handle.set_up("br-pyd")
        handle.add_address("br-pyd", "192.0.2.1/24")
        handle.add_address("br-pyd", "198.51.100.7/32")
        assert handle.addresses("br-pyd") == ["192.0.2.1/24", "198.51.100.7/32"]
        assert handle.addresses() == ["192.0.2.1/24", "198.51.100.7/32"]  # lo is down, bare
        info = ip_json(netns, "-4", "addr", "show", "dev", "br-pyd")[0]["addr_info"]
        assert [(a["local"], a["prefixlen"], a.get("broadcast")) for a in info] == \
            [("192.0.2.1", 24, "192.0.2.255"), ("198.51.100.7", 32, None)]

        handle.add_route("203.0.113.0/24", name="br-pyd")
        handle.add_route(gateway="192.0.2.254")
        routes = handle.routes()
        assert {"dst": "0.0.0.0/0", "gateway": "192.0.2.254", "name": "br-pyd",
                "table": 254} in routes
        assert {"dst": "203.0.113.0/24", "gateway": None, "name": "br-pyd",
                "table": 254} in routes
        assert {"dst": "192.0.2.0/24", "gateway": None, "name": "br-pyd",
                "table": 254} in routes
        shown = {r["dst"]: r for r in ip_json(netns, "route")}
        assert shown["default"]["gateway"] == "192.0.2.254"
        assert shown["203.0.113.0/24"]["scope"] == "link"

        handle.del_address("br-pyd", "198.51.100.7/32")
        assert handle.addresses("br-pyd") == ["192.0.2.1/24"]
        assert "198.51.100.7" not in ip(netns, "addr", "show", "dev", "br-pyd")


def test_ipv6_address_and_routes(netns):
    disabled = subprocess.run(["ip", "netns", "exec", netns, "cat",
                               "/proc/sys/net/ipv6/conf/default/disable_ipv6"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if disabled.returncode != 0 or disabled.stdout.strip() != b"0":
        pytest.skip("IPv6 is disabled in a new network namespace here")
    with netlink.Handle(path(netns)) as handle:
        handle.add_bridge("br-pyd")
        handle.set_up("br-pyd")
        handle.add_address("br-pyd", "fd00::1/64")
        assert "fd00::1/64" in handle.addresses("br-pyd", socket.AF_INET6)
        assert handle.addresses("br-pyd") == []  # no IPv4 address
        info = ip_json(netns, "-6", "addr", "show", "dev", "br-pyd")[0]["addr_info"]
        assert ("fd00::1", 64) in [(a["local"], a["prefixlen"]) for a in info]

        handle.add_route("fd01::/64", gateway="fd00::2")
        handle.add_route(gateway="fd00::fe")
        routes = handle.routes(socket.AF_INET6)
        assert {"dst": "fd01::/64", "gateway": "fd00::2", "name": "br-pyd",
                "table": 254} in routes
        assert {"dst": "::/0", "gateway": "fd00::fe", "name": "br-pyd", "table": 254} in routes
        assert not [r for r in handle.routes() if r["dst"].startswith("fd")]
        assert "fd01::/64 via fd00::2" in ip(netns, "-6", "route")

        handle.del_address("br-pyd", "fd00::1/64")
        assert "fd00::1/64" not in handle.addresses("br-pyd", socket.AF_INET6)


def test_veth_into_a_second_netns_pings_across_the_bridge(make_netns):
    """The bridge driver's whole job: a bridge, a veth pair with one end on the bridge and
    the other renamed eth0 in the "container", an address and a default route there."""
    host, container = make_netns(), make_netns()
    with netlink.Handle(path(host)) as handle:
        handle.add_bridge("br-pyd")
        handle.add_address("br-pyd", "192.0.2.1/24")
        handle.set_up("br-pyd")
        handle.set_up("lo")
        handle.add_address("lo", "198.51.100.1/32")  # reachable only by the default route
        handle.add_veth("veth-pyd", "veth-pyd-c", mtu=1450)
        handle.set_master("veth-pyd", "br-pyd")
        assert handle.link("veth-pyd")["master"] == handle.link_index("br-pyd")
        assert handle.link("veth-pyd-c")["mtu"] == 1450
        handle.set_up("veth-pyd")
        fd = os.open(path(container), os.O_RDONLY)
        try:
            handle.set_netns("veth-pyd-c", fd=fd)
        finally:
            os.close(fd)
        assert handle.link_index("veth-pyd-c") is None
        shown = ip_json(host, "link", "show", "dev", "veth-pyd")[0]
        assert shown["master"] == "br-pyd" and shown["mtu"] == 1450

    with netlink.Handle(path(container)) as handle:
        handle.rename("veth-pyd-c", "eth0")
        handle.set_mac("eth0", MAC)
        handle.add_address("eth0", "192.0.2.2/24")
        handle.set_up("eth0")
        handle.set_up("lo")
        handle.add_route(gateway="192.0.2.1", name="eth0")
        eth0 = handle.link("eth0")
        assert (eth0["kind"], eth0["up"], eth0["mac"]) == ("veth", True, MAC)
        assert {"dst": "0.0.0.0/0", "gateway": "192.0.2.1", "name": "eth0",
                "table": 254} in handle.routes()
    assert ip_json(container, "addr", "show", "dev", "eth0")[0]["addr_info"][0]["local"] == \
        "192.0.2.2"
    assert ping(container, "192.0.2.1"), "no answer across the veth pair and the bridge"
    assert ping(container, "198.51.100.1"), "no answer through the default route"
    assert ping(host, "192.0.2.2")


def test_veth_peer_born_in_another_netns_with_its_name_and_mac(make_netns):
    """What the bridge driver does: the container end is made inside the container's
    namespace, already named eth0 and with its MAC, so nothing has to move later."""
    host, container = make_netns(), make_netns()
    fd = os.open(path(container), os.O_RDONLY)
    try:
        with netlink.Handle(path(host)) as handle:
            handle.add_veth("veth-pyd", "eth0", mtu=1400, peer_netns_fd=fd, peer_mac=MAC)
            assert handle.link_index("eth0") is None and handle.link("veth-pyd")["mtu"] == 1400
    finally:
        os.close(fd)
    with netlink.Handle(path(container)) as handle:
        eth0 = handle.link("eth0")
        assert (eth0["kind"], eth0["mac"], eth0["mtu"], eth0["up"]) == ("veth", MAC, 1400, False)


def test_veth_born_on_the_bridge_and_up_in_one_request(make_netns):
    """create_endpoint's single RTM_NEWLINK: the first end already a port of the bridge and
    up, the peer (down) in the other namespace; a bridge that does not exist creates nothing."""
    host, container = make_netns(), make_netns()
    fd = os.open(path(container), os.O_RDONLY)
    try:
        with netlink.Handle(path(host)) as handle:
            handle.add_bridge("br-pyd")
            handle.set_up("br-pyd")
            handle.add_veth("veth-pyd", "eth0", peer_netns_fd=fd, master="br-pyd", up=True)
            end = handle.link("veth-pyd")
            assert (end["master"], end["up"]) == (handle.link_index("br-pyd"), True)
            with pytest.raises(netlink.NetlinkError) as raised:
                handle.add_veth("veth-pyd2", "eth1", peer_netns_fd=fd, master="br-none", up=True)
            assert raised.value.errno == errno.ENODEV
            assert handle.link_index("veth-pyd2") is None
    finally:
        os.close(fd)
    with netlink.Handle(path(container)) as handle:
        assert not handle.link("eth0")["up"] and handle.link_index("eth1") is None


def test_set_netns_by_pid_and_delete(make_netns):
    here, there = make_netns(), make_netns()
    sleeper = subprocess.Popen(["ip", "netns", "exec", there, "sleep", "30"])
    try:
        target = os.stat(path(there)).st_ino
        deadline = time.monotonic() + 10
        while os.stat(netlink.netns_of_pid(sleeper.pid)).st_ino != target:
            assert time.monotonic() < deadline, "ip netns exec never entered the namespace"
            time.sleep(0.01)
        with netlink.Handle(path(here)) as handle:
            handle.add_veth("veth-a", "veth-b")
            handle.set_netns("veth-b", pid=sleeper.pid)
            assert [l["name"] for l in handle.links()] == ["lo", "veth-a"]
            assert ip_json(there, "link", "show", "dev", "veth-b")[0]["ifname"] == "veth-b"
            handle.delete_link("veth-a")  # one end takes the other with it
            assert handle.link_index("veth-a") is None
        with netlink.Handle(netlink.netns_of_pid(sleeper.pid)) as handle:
            assert handle.link_index("veth-b") is None
        assert ip_json(there, "link") == ip_json(there, "link", "show", "dev", "lo")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_errors_carry_errno_and_name_the_operation(netns):
    with netlink.Handle(path(netns)) as handle:
        handle.add_bridge("br-pyd")
        handle.add_veth("veth-pyd", "veth-pyd-c")
        with pytest.raises(netlink.NetlinkError) as raised:
            handle.add_bridge("br-pyd")
        assert raised.value.errno == errno.EEXIST
        assert str(raised.value) == "[Errno 17] File exists: add link br-pyd (bridge)"
        with pytest.raises(netlink.NetlinkError) as raised:
            handle.link("missing0")
        assert raised.value.errno == errno.ENODEV and "missing0" in str(raised.value)
        assert handle.link_index("missing0") is None
        for call in (lambda: handle.set_up("missing0"), lambda: handle.delete_link("missing0"),
                     lambda: handle.rename("missing0", "eth0"),
                     lambda: handle.add_address("missing0", "192.0.2.1/24"),
                     lambda: handle.addresses("missing0")):
            with pytest.raises(netlink.NetlinkError) as raised:
                call()
            assert raised.value.errno == errno.ENODEV and "missing0" in str(raised.value)
        with pytest.raises(netlink.NetlinkError) as raised:
            handle.set_master("veth-pyd", "docker9")
        assert raised.value.errno == errno.ENODEV
        assert "could not find bridge docker9" in str(raised.value)
        handle.add_address("br-pyd", "192.0.2.1/24")
        with pytest.raises(netlink.NetlinkError) as raised:
            handle.add_address("br-pyd", "192.0.2.1/24")
        assert raised.value.errno == errno.EEXIST
        with pytest.raises(netlink.NetlinkError) as raised:
            handle.set_bridge_port_hairpin("veth-pyd", True)  # not on a bridge
        assert raised.value.errno == errno.EOPNOTSUPP

        # Bad input is refused before anything is sent.
        with pytest.raises(ValueError):
            handle.add_address("br-pyd", "192.0.2.300/24")
        with pytest.raises(ValueError):
            handle.set_mac("br-pyd", "02:42:zz:00:00:01")
        with pytest.raises(ValueError):
            handle.add_bridge("br-other", mac="02:42")
        with pytest.raises(ValueError):
            handle.add_route("fd01::/64", gateway="192.0.2.1")
        with pytest.raises(ValueError):
            handle.set_netns("veth-pyd")
        assert handle.addresses("br-pyd") == ["192.0.2.1/24"]
        assert handle.link_index("br-other") is None
    with pytest.raises(netlink.NetlinkError) as raised:
        netlink.Handle("/var/run/netns/pyd-nl-does-not-exist")
    assert raised.value.errno == errno.ENOENT


def test_handle_leaves_the_calling_thread_in_its_namespace(netns):
    before = os.readlink("/proc/thread-self/ns/net")
    with netlink.Handle(path(netns)) as handle:
        assert os.readlink("/proc/thread-self/ns/net") == before
        handle.add_bridge("br-pyd-probe")
        assert [l["name"] for l in handle.links()] == ["lo", "br-pyd-probe"]
    assert os.readlink("/proc/thread-self/ns/net") == before
    assert "br-pyd-probe" in ip(netns, "-o", "link")
    with netlink.Handle() as own:  # the test's own namespace, read only
        assert own.link_index("br-pyd-probe") is None


def test_hairpin_mode_of_a_bridge_port(netns):
    with netlink.Handle(path(netns)) as handle:
        handle.add_bridge("br-pyd")
        handle.add_veth("veth-pyd", "veth-pyd-c")
        handle.set_master("veth-pyd", "br-pyd")
        for on in (True, False):
            handle.set_bridge_port_hairpin("veth-pyd", on)
            shown = ip_json(netns, "-d", "link", "show", "dev", "veth-pyd")[0]
            assert shown["linkinfo"]["info_slave_data"]["hairpin"] is on
        handle.set_master("veth-pyd", None)
        assert handle.link("veth-pyd")["master"] == 0


def test_dumps_span_many_datagrams(netns):
    """64 bridges are ~200 KiB of RTM_NEWLINK: the kernel sends them in several datagrams."""
    names = ["br-pyd%d" % n for n in range(64)]
    with netlink.Handle(path(netns)) as handle:
        for name in names:
            handle.add_bridge(name)
        listed = [l["name"] for l in handle.links()]
    assert sorted(listed) == sorted(names + ["lo"])
    assert len(ip_json(netns, "link")) == len(listed)


def test_one_handle_is_safe_across_threads(netns):
    with netlink.Handle(path(netns)) as handle:
        for n in range(4):
            handle.add_bridge("br-pyd%d" % n)
        indexes = {l["name"]: l["index"] for l in handle.links()}
        failures = []

        def hammer(name):
            try:
                for _ in range(50):
                    assert handle.link(name)["index"] == indexes[name]
                    assert len(handle.links()) == 5
            except Exception as err:  # noqa: BLE001 (reported by the main thread)
                failures.append(err)

        threads = [threading.Thread(target=hammer, args=("br-pyd%d" % n,), daemon=True)
                   for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not [t for t in threads if t.is_alive()], "a thread hung waiting for its reply"
        assert failures == []
