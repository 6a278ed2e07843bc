"""drivers/stats.py: one collector thread for every watcher, Docker's stats shape, network
counters read from a container's own network namespace."""
import os
import subprocess
import threading
import uuid

import pytest

from drivers import stats


def test_one_thread_samples_for_every_watcher():
    calls = []

    def sampler():
        calls.append(threading.current_thread().name)
        return {"cpu_stats": {"cpu_usage": {"total_usage": len(calls)}}, "id": "c"}

    collector = stats.Collector(interval=0.05)
    first, second = collector.subscribe("c", sampler), collector.subscribe("c", sampler)
    try:
        a1, b1 = first.next(timeout=5), second.next(timeout=5)
        a2 = first.next(timeout=5)
    finally:
        first.close()
        second.close()
    assert a1["read"] == b1["read"]  # the same sample, not one read per client
    assert set(calls) == {"stats collector"}
    assert a1["preread"] == stats.ZERO_TIME
    assert a1["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert a2["preread"] == a1["read"] and a2["precpu_stats"] == a1["cpu_stats"]
    assert a2["cpu_stats"]["system_cpu_usage"] >= a1["cpu_stats"]["system_cpu_usage"] > 0
    assert a1["cpu_stats"]["online_cpus"] == os.sysconf("SC_NPROCESSORS_ONLN")


def test_stop_collection_ends_every_stream():
    collector = stats.Collector(interval=0.05)
    watcher = collector.subscribe("gone", lambda: None)
    collector.stop_collection("gone")
    assert watcher.next(timeout=5) is None


def test_empty_stats_have_dockers_keys():
    empty = stats.empty("/x", "abc")
    assert set(empty) == {"read", "preread", "pids_stats", "blkio_stats", "num_procs",
                          "storage_stats", "cpu_stats", "precpu_stats", "memory_stats", "name", "id"}
    assert len(empty["blkio_stats"]) == 8


class FakeManager(object):
    def __init__(self, limit):
        self.limit = limit

    def stats(self):
        return {"memory_stats": {"usage": 1, "limit": self.limit}, "cpu_stats": {}}


def test_an_unlimited_container_reports_the_hosts_memory():
    sample = stats.sample(FakeManager(2 ** 63 - 4096), os.getpid(), "/x", "abc", 1000, False)
    assert sample["memory_stats"]["limit"] == 1000 and "networks" not in sample
    assert stats.sample(FakeManager(0), os.getpid(), "/x", "abc", 1000, False)[
        "memory_stats"]["limit"] == 1000
    assert stats.sample(FakeManager(500), os.getpid(), "/x", "abc", 1000, False)[
        "memory_stats"]["limit"] == 500


@pytest.fixture
def netns_process():
    """A process in a network namespace of the test's own, with a veth pair in it."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = "pyd-stats-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    process = None
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "eth7", "type", "veth", "peer", "name",
                        "eth8"], check=True)
        process = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "30"])
        yield process.pid
    finally:
        if process is not None:
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_network_stats_come_from_the_containers_namespace(netns_process):
    for _ in range(100):  # until `ip netns exec` has entered the namespace and exec'd sleep
        if os.readlink("/proc/%d/ns/net" % netns_process) != os.readlink("/proc/self/ns/net"):
            break
        threading.Event().wait(0.01)
    networks = stats.network_stats(netns_process)
    assert sorted(networks) == ["eth7", "eth8"]
    assert set(networks["eth7"]) == {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
                                     "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"}


def test_system_cpu_usage_grows():
    first = stats.system_cpu_usage()
    threading.Event().wait(0.05)
    assert stats.system_cpu_usage() >= first > 0
