"""drivers/portmapper.py: the host port allocator and the proxy's listeners.

The allocator is pure bookkeeping. The listener tests bind fixed ports (8080, 5353), so each
runs in a forked child inside a network namespace of its own, which dies with the child.
"""
import os
import socket
import subprocess
import traceback

import pytest

from drivers import linux, portmapper
from drivers.portmapper import PortAllocator, PortAllocatorError, open_listener


@pytest.fixture
def allocator(tmp_path):
    """An allocator over the range 32768-60999, whatever this host's is."""
    path = tmp_path / "ip_local_port_range"
    path.write_text("32768\t60999\n")
    return PortAllocator(str(path))


def small_allocator(tmp_path, first, last):
    path = tmp_path / "range"
    path.write_text("%d %d\n" % (first, last))
    return PortAllocator(str(path))


# --- the ephemeral range and its order -----------------------------------------------------

def test_range_comes_from_ip_local_port_range(allocator):
    assert (allocator.begin, allocator.end) == (32768, 60999)


def test_unreadable_range_falls_back_to_dockerds(tmp_path):
    allocator = PortAllocator(str(tmp_path / "missing"))
    assert (allocator.begin, allocator.end) == (49153, 65535)
    (tmp_path / "garbage").write_text("many\n")
    assert PortAllocator(str(tmp_path / "garbage")).begin == 49153


def test_ephemeral_ports_come_in_order_from_the_start_of_the_range(allocator):
    assert [allocator.request("", "tcp") for _ in range(3)] == [32768, 32769, 32770]


def test_a_released_port_is_not_handed_out_again_before_the_cursor_wraps(tmp_path):
    allocator = small_allocator(tmp_path, 100, 102)
    assert [allocator.request("", "tcp") for _ in range(2)] == [100, 101]
    allocator.release("", "tcp", 100)
    assert allocator.request("", "tcp") == 102
    assert allocator.request("", "tcp") == 100  # wrapped, and 101 is still taken


def test_a_full_range_is_dockerds_all_ports_are_allocated(tmp_path):
    allocator = small_allocator(tmp_path, 100, 101)
    allocator.request("", "udp")
    allocator.request("", "udp")
    with pytest.raises(PortAllocatorError) as raised:
        allocator.request("", "udp")
    assert str(raised.value) == "all ports are allocated"
    assert allocator.request("", "tcp") == 100  # another proto has its own ports


def test_ephemeral_ports_skip_explicitly_taken_ones(tmp_path):
    allocator = small_allocator(tmp_path, 100, 102)
    allocator.request("0.0.0.0", "tcp", 100)
    assert allocator.request("", "tcp") == 101


# --- conflicts -------------------------------------------------------------------------------

def test_a_taken_port_is_dockerds_already_allocated_with_the_host_ip(allocator):
    assert allocator.request("", "tcp", 8080) == 8080
    with pytest.raises(PortAllocatorError) as raised:
        allocator.request("0.0.0.0", "tcp", 8080)
    assert str(raised.value) == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    allocator.request("127.0.0.1", "tcp", 8443)
    with pytest.raises(PortAllocatorError) as raised:
        allocator.request("127.0.0.1", "tcp", 8443)
    assert str(raised.value) == "Bind for 127.0.0.1:8443 failed: port is already allocated"


def test_ipv6_conflict_names_the_address_as_go_prints_it(allocator):
    allocator.request("::", "tcp", 8080)
    with pytest.raises(PortAllocatorError) as raised:
        allocator.request("0:0::0", "tcp", 8080)
    assert str(raised.value) == "Bind for :::8080 failed: port is already allocated"


def test_protocols_and_families_have_their_own_ports(allocator):
    """An empty HostIp publishes on 0.0.0.0 and :: with one port number (wire.md 24)."""
    assert allocator.request("0.0.0.0", "tcp", 8080) == 8080
    assert allocator.request("0.0.0.0", "udp", 8080) == 8080
    assert allocator.request("::", "tcp", 8080) == 8080
    first = allocator.request("0.0.0.0", "tcp")
    assert allocator.request("::", "tcp", first) == first


def test_wildcard_and_specific_address_are_separate_entries_as_in_libnetwork(allocator):
    """libnetwork books per address; the kernel refuses the second bind (see
    test_bind_under_a_wildcard_listener_fails_with_the_bind_error)."""
    allocator.request("0.0.0.0", "tcp", 8080)
    assert allocator.request("127.0.0.1", "tcp", 8080) == 8080


def test_ephemeral_ports_skip_ports_of_overlapping_addresses(allocator):
    assert allocator.request("0.0.0.0", "tcp") == 32768
    assert allocator.request("127.0.0.1", "tcp") == 32769  # 32768 would fail to bind
    assert allocator.request("0.0.0.0", "tcp") == 32770    # and the other way round
    assert allocator.request("::", "tcp") == 32768          # another family: no overlap
    assert allocator.request("::1", "tcp") == 32769


def test_release_frees_the_port_and_ignores_unknown_ones(allocator):
    allocator.request("", "tcp", 8080)
    allocator.release("0.0.0.0", "tcp", 8080)
    allocator.release("10.0.0.1", "udp", 9)  # never booked
    assert allocator.request("", "tcp", 8080) == 8080


def test_reserve_rebooks_a_port_quietly(allocator):
    allocator.reserve("", "tcp", 32768)
    allocator.reserve("", "tcp", 32768)  # twice: still no error
    with pytest.raises(PortAllocatorError):
        allocator.request("", "tcp", 32768)
    assert allocator.request("", "tcp") == 32769


def test_bad_requests_get_clear_errors(allocator):
    with pytest.raises(PortAllocatorError, match="^unknown protocol$"):
        allocator.request("", "sctp", 80)
    with pytest.raises(PortAllocatorError, match="^Invalid ip address: 300.1.1.1$"):
        allocator.request("300.1.1.1", "tcp", 80)
    with pytest.raises(PortAllocatorError, match="^Invalid hostPort: 70000$"):
        allocator.request("", "tcp", 70000)


def test_ipv4_mapped_addresses_are_ipv4_as_in_go():
    assert portmapper.normalize_ip("::ffff:127.0.0.1") == "127.0.0.1"
    assert portmapper.normalize_ip("") == "0.0.0.0"


# --- listeners, in a private network namespace ------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def in_private_netns(body):
    """Run body() in a forked child with a network namespace of its own (lo up: a namespace
    without routes lets any address be bound); a failure there (its traceback) fails the
    test."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            linux.unshare(linux.CLONE_NEWNET)
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            body()
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        failure = report.read().decode()
    _, status = os.waitpid(pid, 0)
    assert status == 0, failure


def bind_error(proto, host_ip, host_port):
    with pytest.raises(OSError) as raised:
        open_listener(proto, host_ip, host_port)
    return str(raised.value)


@needs_root
def test_tcp_listener_listens_with_so_reuseaddr():
    def body():
        with open_listener("tcp", "0.0.0.0", 8080) as listener:
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            assert listener.getsockname() == ("0.0.0.0", 8080)
    in_private_netns(body)


@needs_root
def test_ipv6_listeners_are_ipv6_only_so_both_families_get_the_port():
    def body():
        for proto in ("tcp", "udp"):
            with open_listener(proto, "0.0.0.0", 8080), open_listener(proto, "::", 8080) as v6:
                assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
                assert v6.family == socket.AF_INET6
    in_private_netns(body)


@needs_root
def test_a_port_in_use_fails_with_docker_proxys_words():
    def body():
        with open_listener("tcp", "0.0.0.0", 8080), open_listener("udp", "", 5353), \
                open_listener("tcp", "::", 8080):
            assert bind_error("tcp", "0.0.0.0", 8080) == (
                "Error starting userland proxy: listen tcp4 0.0.0.0:8080: bind: "
                "address already in use")
            assert bind_error("udp", "0.0.0.0", 5353) == (
                "Error starting userland proxy: listen udp4 0.0.0.0:5353: bind: "
                "address already in use")
            assert bind_error("tcp", "::", 8080) == (
                "Error starting userland proxy: listen tcp6 [::]:8080: bind: "
                "address already in use")
    in_private_netns(body)


@needs_root
def test_bind_under_a_wildcard_listener_fails_with_the_bind_error():
    def body():
        with open_listener("tcp", "0.0.0.0", 8080), open_listener("udp", "0.0.0.0", 5353):
            assert bind_error("tcp", "127.0.0.1", 8080).endswith(
                "listen tcp4 127.0.0.1:8080: bind: address already in use")
            assert bind_error("udp", "127.0.0.1", 5353).endswith(
                "listen udp4 127.0.0.1:5353: bind: address already in use")
        with open_listener("tcp", "127.0.0.1", 8080):
            assert bind_error("tcp", "0.0.0.0", 8080).endswith(
                "listen tcp4 0.0.0.0:8080: bind: address already in use")
    in_private_netns(body)


@needs_root
def test_an_address_the_host_lacks_cannot_be_bound():
    def body():
        assert bind_error("tcp", "192.0.2.1", 80) == (
            "Error starting userland proxy: listen tcp4 192.0.2.1:80: bind: "
            "cannot assign requested address")
    in_private_netns(body)


@needs_root
def test_a_closed_listener_frees_the_port():
    def body():
        open_listener("tcp", "0.0.0.0", 8080).close()
        open_listener("tcp", "0.0.0.0", 8080).close()
    in_private_netns(body)
