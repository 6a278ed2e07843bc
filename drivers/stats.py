"""Container statistics: one collector thread for every client, and Docker's StatsJSON.

Docker 1.8.2's daemon started a statsCollector in NewDaemon (daemon/stats_collector_unix.go):
a single goroutine that, once a second, reads the host's CPU time and then every container
that somebody is watching, and publishes each sample to all of that container's watchers. A
hundred `docker stats` clients cost one read per container per second, not a hundred. This is
that collector, with the sampling done by a function the daemon hands in per container.

What a watcher gets is the shape of GET /containers/{id}/stats (wire.md §3.6):

    {"read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats",
     "cpu_stats": {"cpu_usage": {...}, "system_cpu_usage", "online_cpus", "throttling_data"},
     "precpu_stats", "memory_stats", ["networks": {"eth0": {...}}], "name", "id"}

The cgroup part comes from drivers/cgroups.py (Manager.stats), the network part from the
container's own network namespace: /proc/<pid>/net/dev lists its interfaces, and every one
but the loopback goes in `networks` (dockerd lists its endpoints' interfaces, keyed the same
way). "preread" and "precpu_stats" are not the collector's: each watcher fills them from the
sample it saw before (Watcher.next), so `docker stats` computes CPU percentages from two
samples a second apart: (Δ total_usage / Δ system_cpu_usage) x online_cpus x 100.
"""
import os
import queue
import threading
import time

from drivers import logger

ZERO_TIME = "0001-01-01T00:00:00Z"
INTERVAL = 1.0

_EMPTY_CPU = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
              "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
               "io_time_recursive", "sectors_recursive")
_NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped")
_NET_TX_FIELDS = ("tx_bytes", "tx_packets", "tx_errors", "tx_dropped")


class Collector(object):
    """statsCollector: samples each watched container every `interval` seconds on one thread.

    subscribe(key, sampler) -> Watcher; sampler() returns a sample (see sample()) or None while
    the container does not run. The thread starts with the first watcher and sleeps, holding
    nothing, whenever there is none.
    """

    def __init__(self, interval=INTERVAL):
        self.interval = interval
        self._cond = threading.Condition()
        self._publishers = {}   # key -> [sampler, set of queues]
        self._thread = None

    def subscribe(self, key, sampler):
        with self._cond:
            publisher = self._publishers.setdefault(key, [sampler, set()])
            watcher = Watcher(self, key)
            publisher[1].add(watcher.queue)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stats collector",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return watcher

    def unsubscribe(self, watcher):
        with self._cond:
            publisher = self._publishers.get(watcher.key)
            if publisher is not None:
                publisher[1].discard(watcher.queue)
                if not publisher[1]:
                    del self._publishers[watcher.key]

    def stop_collection(self, key):
        """The container stopped or went away: end every watcher's stream."""
        with self._cond:
            publisher = self._publishers.pop(key, None)
        for watcher_queue in publisher[1] if publisher else ():
            watcher_queue.put(None)

    def _run(self):
        while True:
            with self._cond:
                while not self._publishers:
                    self._cond.wait()
                publishers = [(sampler, set(queues)) for sampler, queues in
                              self._publishers.values()]
            system_usage, online = system_cpu_usage(), online_cpus()
            for sampler, queues in publishers:
                try:
                    sample = sampler()
                except OSError:  # the container is going away under us
                    sample = None
                if sample is None:
                    continue
                sample["read"] = logger.format_time(time.time_ns())
                sample["cpu_stats"]["system_cpu_usage"] = system_usage
                sample["cpu_stats"]["online_cpus"] = online
                for watcher_queue in queues:
                    watcher_queue.put(sample)
            time.sleep(self.interval)


class Watcher(object):
    """One client's subscription: next() gives the next sample with its precpu_stats filled
    from the one before (zeros, and preread at Go's zero time, for the first)."""

    def __init__(self, collector, key):
        self.collector = collector
        self.key = key
        self.queue = queue.Queue()
        self.previous = None

    def next(self, timeout):
        """The next sample, None when the container stopped; queue.Empty after timeout."""
        sample = self.queue.get(timeout=timeout)
        if sample is None:
            return None
        answer = dict(sample)
        if self.previous is None:
            answer["preread"], answer["precpu_stats"] = ZERO_TIME, _EMPTY_CPU
        else:
            answer["preread"] = self.previous["read"]
            answer["precpu_stats"] = self.previous["cpu_stats"]
        self.previous = sample
        return answer

    def close(self):
        self.collector.unsubscribe(self)


def sample(manager, pid, name, container_id, machine_memory, own_network=True):
    """One container's stats without read/preread/precpu and the host's CPU time (the
    collector adds those). manager is its cgroups.Manager; own_network says whether the
    container has a network namespace of its own (--network host has not)."""
    result = empty(name, container_id)
    result.update(manager.stats())
    memory = result["memory_stats"]
    if machine_memory and memory.get("limit", 0) > machine_memory or \
            "limit" in memory and not memory["limit"]:
        memory["limit"] = machine_memory  # no limit: the host's memory, as dockerd reports
    if own_network:
        networks = network_stats(pid)
        if networks:
            result["networks"] = networks
    return result


def empty(name, container_id):
    """The stats of a container that does not run (what dockerd answers for stream=0)."""
    return {"read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
            "blkio_stats": {key: [] for key in _BLKIO_KEYS}, "num_procs": 0,
            "storage_stats": {}, "cpu_stats": _copy(_EMPTY_CPU), "precpu_stats": _copy(_EMPTY_CPU),
            "memory_stats": {}, "name": name, "id": container_id}


def _copy(value):
    return {key: dict(inner) for key, inner in value.items()}


def network_stats(pid):
    """{interface: {rx_bytes, rx_packets, rx_errors, rx_dropped, tx_...}} from the network
    namespace of pid, loopback left out; {} if the process is gone."""
    try:
        with open("/proc/%d/net/dev" % pid) as dev:
            lines = dev.read().splitlines()[2:]
    except OSError:
        return {}
    networks = {}
    for line in lines:
        name, _, counters = line.partition(":")
        name, values = name.strip(), [int(n) for n in counters.split()]
        if name == "lo" or len(values) < 12:
            continue
        stats = dict(zip(_NET_FIELDS, values[0:4]))
        stats.update(zip(_NET_TX_FIELDS, values[8:12]))
        networks[name] = stats
    return networks


def system_cpu_usage():
    """getSystemCPUUsage: the host's CPU time in nanoseconds, the sum of the first seven fields
    of /proc/stat's "cpu" line (user nice system idle iowait irq softirq)."""
    with open("/proc/stat") as proc_stat:
        for line in proc_stat:
            fields = line.split()
            if fields and fields[0] == "cpu":
                ticks = sum(int(field) for field in fields[1:8])
                return ticks * 1000000000 // os.sysconf("SC_CLK_TCK")
    return 0


def online_cpus():
    return os.sysconf("SC_NPROCESSORS_ONLN")
