"""`make bench`: pydockerd's speed and memory, side by side with a reference daemon.

Set BENCH_REF_HOST=unix:///path/to/dockerd.sock (and BENCH_REF_PID=<dockerd pid>) to measure a
running dockerd 20.10 in the same run; for the networking figures, run that dockerd in a network
namespace of its own and set BENCH_REF_NETNS=/var/run/netns/<name> (never beside a pydockerd
with iptables on: both manage the same chains). BENCH_ONLY=log runs only the logging rows,
BENCH_ONLY=network only the networking ones, BENCH_ONLY=runtime only the stats, cp and commit rows.
Figures are printed, never asserted: speed goals live here, not in the tests.
"""
import compileall
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import DOCKER, REPO, DaemonProcess, build_busybox_rootfs, new_daemon_dir  # noqa: E402
from registry_fixtures import Registry, docker_archive, layer_tar, sha256  # noqa: E402

BOOTS = 5
IMPORT_MB = 100
IMAGE_COUNT = 200
REGISTRY_MB = 100
REGISTRY_LAYERS = 4


def rss_kib(pid, with_children=True):
    """Resident memory of a process and, for dockerd, its containerd children too."""
    total = 0
    pids = [pid] + (children(pid) if with_children else [])
    for each in pids:
        try:
            with open("/proc/%d/status" % each) as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
                        found.extend(children(int(entry)))
            except (OSError, ValueError, IndexError):
                pass
    return found


def docker(host, *args, stdin=None, env=None):
    env = dict(os.environ, DOCKER_HOST=host, **(env or {}))
    started = time.monotonic()
    subprocess.run([DOCKER] + list(args), env=env, stdin=stdin, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.monotonic() - started


def bench_boot():
    times, rss = [], 0
    for _ in range(BOOTS):
        daemon = DaemonProcess(new_daemon_dir(), ["-b", "none"])
        started = time.monotonic()
        daemon.start()
        times.append(time.monotonic() - started)
        time.sleep(1)
        rss = rss_kib(daemon.proc.pid, with_children=False)
        daemon.cleanup()
    print("boot to /_ping      pydockerd  median %.3f s (min %.3f, %d boots)"
          % (statistics.median(times), min(times), BOOTS))
    print("idle RSS            pydockerd  %.1f MB" % (rss / 1024))
    ref_pid = os.environ.get("BENCH_REF_PID")
    if ref_pid:
        print("idle RSS            reference  %.1f MB (dockerd and its children)"
              % (rss_kib(int(ref_pid)) / 1024))


def make_rootfs_tar(path, megabytes):
    """A tar of many files of varied sizes, like a distribution's root filesystem."""
    rng = open("/dev/urandom", "rb")
    with tarfile.open(path, "w") as tar:
        written, number = 0, 0
        while written < megabytes * 1024 * 1024:
            size = (4096, 65536, 1024 * 1024)[number % 3]
            info = tarfile.TarInfo("usr/lib/bench/d%03d/f%05d" % (number // 100, number))
            info.size = size
            tar.addfile(info, io.BytesIO(rng.read(size)))
            written += size
            number += 1
    rng.close()


def bench_images(hosts, work):
    rootfs = os.path.join(work, "rootfs.tar")
    make_rootfs_tar(rootfs, IMPORT_MB)
    size_mb = os.path.getsize(rootfs) / 1e6
    for label, host in hosts:
        with open(rootfs, "rb") as source:
            seconds = docker(host, "import", "-", "bench/import:1", stdin=source)
        print("import %3.0f MB       %-10s %.1f MB/s" % (size_mb, label, size_mb / seconds))
        saved = os.path.join(work, "saved-%s.tar" % label)
        docker(host, "save", "-o", saved, "bench/import:1")
        docker(host, "rmi", "bench/import:1")
        seconds = docker(host, "load", "-i", saved)
        print("load %3.0f MB         %-10s %.1f MB/s" % (size_mb, label, size_mb / seconds))
        docker(host, "rmi", "bench/import:1")
    for label, host in hosts:
        for number in range(IMAGE_COUNT):
            data = io.BytesIO()
            with tarfile.open(fileobj=data, mode="w") as tar:
                info = tarfile.TarInfo("id")
                payload = ("%s-%d" % (label, number)).encode()
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            subprocess.run([DOCKER, "import", "-", "bench/many:%d" % number], input=data.getvalue(),
                           env=dict(os.environ, DOCKER_HOST=host), check=True,
                           stdout=subprocess.DEVNULL)
        runs = [docker(host, "images") for _ in range(5)]
        print("images (%d)        %-10s median %.3f s" % (IMAGE_COUNT, label, statistics.median(runs)))
        for number in range(IMAGE_COUNT):
            docker(host, "rmi", "bench/many:%d" % number)


def registry_layer(megabytes, seed):
    """A layer like a distribution's: files half random, half text, so gzip has real work."""
    words = b"".join(b"%s-%d " % (word, number) for number in range(64)
                     for word in (b"lib", b"usr", b"share", b"locale", seed))
    files, written, number = {}, 0, 0
    with open("/dev/urandom", "rb") as rng:
        while written < megabytes * 1024 * 1024:
            size = (4096, 65536, 1024 * 1024)[number % 3]
            text = (words * (size // (2 * len(words)) + 1))[:size // 2]
            files["usr/lib/%s/f%05d" % (seed.decode(), number)] = rng.read(size - len(text)) + text
            written += size
            number += 1
    return layer_tar(files)


def bench_registry(hosts, work):
    """`docker push`, then `docker rmi` and `docker pull`, of a ~100 MB image of several layers
    through a loopback docker-registry; MB/s of uncompressed layer data."""
    layers = [registry_layer(REGISTRY_MB // REGISTRY_LAYERS, b"l%d" % number) for number in range(REGISTRY_LAYERS)]
    archive = os.path.join(work, "registry-image.tar")
    image_id = sha256(docker_archive(archive, layers, label="bench"))
    size_mb = sum(len(layer) for layer in layers) / 1e6
    server = Registry(os.path.join(work, "registry")).start()
    try:
        for label, host in hosts:
            name = "%s/bench/%s:1" % (server.host, label)
            docker(host, "load", "-i", archive)
            docker(host, "tag", image_id, name)
            seconds = docker(host, "push", name)
            print("push %3.0f MB (%d layers) %-10s %.1f MB/s" % (size_mb, len(layers), label, size_mb / seconds))
            docker(host, "rmi", "-f", image_id)
            seconds = docker(host, "pull", name)
            print("pull %3.0f MB (%d layers) %-10s %.1f MB/s" % (size_mb, len(layers), label, size_mb / seconds))
            docker(host, "rmi", "-f", image_id)
    finally:
        server.stop()


RUNS = 11
PARALLEL = 20
PS_CONTAINERS = 100


def load_busybox(host, work):
    """The busybox image every container benchmark runs, from Debian's busybox-static."""
    rootfs = build_busybox_rootfs(os.path.join(work, "busybox-rootfs"))
    tar_path = os.path.join(work, "busybox.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tar_path, "."], check=True)
    with open(tar_path, "rb") as source:
        docker(host, "import", "-c", 'CMD ["sh"]', "-", "bench/busybox:1", stdin=source)


def bench_containers(hosts, work):
    """docker run --rm, a container's memory cost, 20 parallel starts, ps with 100 containers."""
    for label, host in hosts:
        load_busybox(host, work)
        runs = [docker(host, "run", "--rm", "--network", "none", "bench/busybox:1", "true")
                for _ in range(RUNS)]
        print("run --rm true       %-10s median %.3f s (%d runs)" % (label, statistics.median(runs), RUNS))
        bench_container_memory(label, host)
        started = time.monotonic()
        threads = [threading.Thread(target=docker, args=(host, "run", "-d", "--network", "none",
                                                          "--label", "bench=1", "bench/busybox:1",
                                                          "sleep", "60"))
                   for _ in range(PARALLEL)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print("%d x run -d        %-10s %.2f s" % (PARALLEL, label, time.monotonic() - started))
        for _ in range(PS_CONTAINERS - PARALLEL):
            docker(host, "create", "--network", "none", "--label", "bench=1", "bench/busybox:1", "true")
        runs = [docker(host, "ps", "-a") for _ in range(5)]
        print("ps -a (%d)         %-10s median %.3f s" % (PS_CONTAINERS, label, statistics.median(runs)))
        docker(host, "rm", "-f", *container_ids(host, "label=bench=1"))
        docker(host, "rmi", "bench/busybox:1")


BUILD_CONTEXT_MB = 100
BUILD_STEPS = """FROM bench/busybox:1
ARG RUN_ID
ENV A=1 B=2
LABEL bench=build
RUN echo $RUN_ID > /run-id
WORKDIR /app
COPY small.txt .
RUN cat small.txt > copy.txt
EXPOSE 8080
USER nobody
CMD ["cat", "/app/copy.txt"]
"""


def bench_build(hosts, work):
    """The legacy builder: a 10-step Dockerfile cold (nothing cached) and warm (every step
    cached), and a build whose context is 100 MB (its upload and unpacking)."""
    context = os.path.join(work, "build-context")
    os.makedirs(context)
    for name, text in (("Dockerfile", BUILD_STEPS), ("small.txt", "small\n")):
        with open(os.path.join(context, name), "w") as handle:
            handle.write(text)
    big = os.path.join(work, "big-context")
    shutil.copytree(context, big)
    make_rootfs_tar(os.path.join(work, "big.tar"), BUILD_CONTEXT_MB)
    subprocess.run(["tar", "-C", big, "-xf", os.path.join(work, "big.tar")], check=True)
    for label, host in hosts:
        load_busybox(host, work)
        build = ("build", "--network", "none", "--build-arg", "RUN_ID=%s-%f" % (label, time.time()),
                 "-t", "bench/built:1", context)
        cold = docker(host, *build, env={"DOCKER_BUILDKIT": "0"})
        warm = docker(host, *build, env={"DOCKER_BUILDKIT": "0"})
        print("build 10 steps      %-10s cold %.2f s, warm (cached) %.2f s" % (label, cold, warm))
        seconds = docker(host, "build", "--network", "none", "-t", "bench/big:1", big,
                         env={"DOCKER_BUILDKIT": "0"})
        print("build, %d MB context %-9s %.2f s" % (BUILD_CONTEXT_MB, label, seconds))
        docker(host, "rmi", "bench/built:1", "bench/big:1", "bench/busybox:1")


STATS_CONTAINERS = 20
CP_MB = 100
CP_SMALL_FILES = 5000
COMMIT_MB = 50


def bench_runtime(hosts, work):
    """docker stats --no-stream for 20 running containers; docker cp of each of cp_payloads
    both ways; docker commit of a container with 50 MB of changes."""
    payloads = cp_payloads(work)
    for label, host in hosts:
        load_busybox(host, work)
        env = dict(os.environ, DOCKER_HOST=host)
        ids = [subprocess.run([DOCKER, "run", "-d", "--network", "none", "--label", "bench=1",
                               "bench/busybox:1", "sleep", "600"], env=env, check=True,
                              stdout=subprocess.PIPE).stdout.decode().strip()
               for _ in range(STATS_CONTAINERS)]
        runs = [docker(host, "stats", "--no-stream") for _ in range(3)]
        print("stats --no-stream   %-10s median %.2f s (%d containers)"
              % (label, statistics.median(runs), STATS_CONTAINERS))
        # Untimed: the first 100 MB written after a daemon (or a VM) starts take up to five
        # times as long in write(2) as later ones, whichever daemon comes first.
        docker(host, "cp", payloads[0][1], ids[0] + ":/tmp/warm-up")
        docker(host, "exec", ids[0], "rm", "-rf", "/tmp/warm-up")
        for what, payload in payloads:
            # Each copy starts with nothing left to write back: the pages the payloads or an
            # earlier copy dirtied would slow whichever daemon came next.
            os.sync()
            into = docker(host, "cp", payload, ids[0] + ":/tmp/payload")
            out_dir = os.path.join(work, "cp-out-" + label)
            os.sync()
            back = docker(host, "cp", ids[0] + ":/tmp/payload", out_dir)
            print("cp %-18s in / out  %-10s %.2f / %.2f s" % (what, label, into, back))
            docker(host, "exec", ids[0], "rm", "-rf", "/tmp/payload")
            shutil.rmtree(out_dir) if os.path.isdir(out_dir) else os.remove(out_dir)
        docker(host, "exec", ids[1], "sh", "-c", "head -c %d /dev/urandom > /tmp/changes" % (COMMIT_MB << 20))
        seconds = docker(host, "commit", ids[1], "bench/committed:1")
        print("commit %d MB          %-10s %.2f s" % (COMMIT_MB, label, seconds))
        docker(host, "rm", "-f", *ids)
        docker(host, "rmi", "bench/committed:1", "bench/busybox:1")


def cp_payloads(work):
    """What `docker cp` carries: a 100 MB directory of ten files, one 100 MB file, and
    CP_SMALL_FILES files of 4 KB (where the time goes to entries, not bytes)."""
    tree = os.path.join(work, "cp-tree")
    os.makedirs(tree)
    for index in range(10):
        with open(os.path.join(tree, "part%d" % index), "wb") as part:
            part.write(os.urandom(CP_MB * 1024 * 1024 // 10))
    big = os.path.join(work, "cp-file")
    with open(big, "wb") as whole:
        whole.write(os.urandom(CP_MB * 1024 * 1024))
    small = os.path.join(work, "cp-small")
    for index in range(CP_SMALL_FILES):
        directory = os.path.join(small, "d%02d" % (index % 50))
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "f%d" % index), "wb") as each:
            each.write(os.urandom(4096))
    return [("%d MB in 10 files" % CP_MB, tree), ("%d MB in 1 file" % CP_MB, big),
            ("%d x 4 KB" % CP_SMALL_FILES, small)]


def container_ids(host, label_filter):
    listed = subprocess.run([DOCKER, "ps", "-aq", "--filter", label_filter], check=True,
                            env=dict(os.environ, DOCKER_HOST=host), stdout=subprocess.PIPE)
    return listed.stdout.decode().split()


def bench_container_memory(label, host):
    """The resident memory one running container costs beyond its own process: the monitor
    (pydockerd) or containerd-shim (dockerd), found as the parent of the container's pid 1."""
    env = dict(os.environ, DOCKER_HOST=host)
    cid = subprocess.run([DOCKER, "run", "-d", "--network", "none", "bench/busybox:1", "sleep", "60"],
                         env=env, check=True, stdout=subprocess.PIPE).stdout.decode().strip()
    time.sleep(1)
    pid = int(subprocess.run([DOCKER, "inspect", "-f", "{{.State.Pid}}", cid], env=env, check=True,
                             stdout=subprocess.PIPE).stdout)
    with open("/proc/%d/stat" % pid) as stat:
        parent = int(stat.read().rsplit(")", 1)[1].split()[1])
    print("per-container RSS   %-10s %.1f MB (pid %d, the parent of the container's init)"
          % (label, rss_kib(parent, with_children=False) / 1024, parent))
    docker(host, "rm", "-f", cid)


LOAD_SECONDS = 3
LOAD_CLIENTS = 8
PAGE_BYTES = 4096


def bench_network(hosts, work):
    """docker run --rm on the default bridge, and HTTP requests per second to busybox httpd
    published with -p: through DNAT (the bridge's gateway address) and through the userland
    proxy (127.0.0.1, which DNAT cannot reach), from inside each daemon's network namespace."""
    for label, host, netns in hosts:
        load_busybox(host, work)
        runs = [docker(host, "run", "--rm", "bench/busybox:1", "true") for _ in range(RUNS)]
        print("run --rm (bridge)   %-10s median %.3f s (%d runs)" % (label, statistics.median(runs), RUNS))
        env = dict(os.environ, DOCKER_HOST=host)
        cid = subprocess.run([DOCKER, "run", "-d", "-p", "18380:80", "bench/busybox:1", "sh", "-c",
                              "head -c %d /dev/zero > /tmp/page && httpd -f -p 80 -h /tmp" % PAGE_BYTES],
                             env=env, check=True, stdout=subprocess.PIPE).stdout.decode().strip()
        gateway = subprocess.run([DOCKER, "inspect", "-f", "{{.NetworkSettings.Gateway}}", cid], env=env,
                                 check=True, stdout=subprocess.PIPE).stdout.decode().strip()
        time.sleep(0.5)
        for path, address in (("DNAT", gateway), ("proxy", "127.0.0.1")):
            rate = http_load(netns, "http://%s:18380/page" % address)
            print("requests/s via %-5s %-10s %.0f (%d clients, %d s, %d-byte page)"
                  % (path, label, rate, LOAD_CLIENTS, LOAD_SECONDS, PAGE_BYTES))
        docker(host, "rm", "-f", cid)
        docker(host, "rmi", "bench/busybox:1")


LOG_LINES = 200000
GELF_SINK = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 12201))
print("ready", flush=True)
while True:
    sock.recv(65536)
"""


def bench_logging(hosts, work):
    """Lines per second a container writes through its log driver (json-file, and gelf to a
    UDP sink on loopback): the container's `seq` is held back by whatever the logger does not
    take, so its run time is the logger's pace. And the monitor's (or shim's) memory after."""
    for label, host, netns in hosts:
        load_busybox(host, work)
        sink = subprocess.Popen((["nsenter", "--net=" + netns] if netns else []) +
                                [sys.executable, "-c", GELF_SINK], stdout=subprocess.PIPE)
        try:
            sink.stdout.readline()
            for driver in (["--log-driver", "json-file"],
                           ["--log-driver", "gelf", "--log-opt", "gelf-address=udp://127.0.0.1:12201"]):
                env = dict(os.environ, DOCKER_HOST=host)
                started = time.monotonic()
                cid = subprocess.run([DOCKER, "run", "-d", "--network", "none"] + driver +
                                     ["bench/busybox:1", "seq", str(LOG_LINES)], env=env, check=True,
                                     stdout=subprocess.PIPE).stdout.decode().strip()
                subprocess.run([DOCKER, "wait", cid], env=env, check=True, stdout=subprocess.DEVNULL)
                seconds = time.monotonic() - started
                print("log lines/s %-9s %-10s %.0f (%d lines)" % (driver[1], label, LOG_LINES / seconds,
                                                                  LOG_LINES))
                docker(host, "rm", cid)
        finally:
            sink.kill()
            sink.wait()
        docker(host, "rmi", "bench/busybox:1")


def http_load(netns, url):
    """Requests per second from LOAD_CLIENTS threads for LOAD_SECONDS, run in the namespace."""
    command = [sys.executable, os.path.abspath(__file__), "--load", url]
    if netns:
        command = ["nsenter", "--net=" + netns] + command
    return float(subprocess.run(command, check=True, stdout=subprocess.PIPE).stdout)


def load_main(url):
    """The load generator `http_load` runs: a new connection per request (busybox httpd
    closes each), counted over a fixed time; prints the rate."""
    import urllib.request
    deadline = time.monotonic() + LOAD_SECONDS
    counts = []

    def client():
        done = 0
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
            done += 1
        counts.append(done)

    threads = [threading.Thread(target=client) for _ in range(LOAD_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(sum(counts) / LOAD_SECONDS)


def main():
    # A host runs the daemon from cached bytecode after its first start; build that cache now
    # (compileall writes it even where PYTHONDONTWRITEBYTECODE is set) so boots are comparable.
    compileall.compile_dir(os.path.join(REPO, "drivers"), quiet=1)
    work = tempfile.mkdtemp(prefix="pyd-bench-", dir="/tmp")
    only = os.environ.get("BENCH_ONLY")
    try:
        if only in (None, "runtime"):
            if only is None:
                bench_boot()
            bench_daemon(work, [bench_runtime] if only else [
                bench_images, bench_registry, bench_containers, bench_build, bench_runtime])
        if only == "runtime":
            return
        networked = DaemonProcess(new_daemon_dir(), [], netns=True).start()
        try:
            hosts = [("pydockerd", networked.host, networked.netns_path)]
            if os.environ.get("BENCH_REF_HOST") and os.environ.get("BENCH_REF_NETNS"):
                hosts.append(("reference", os.environ["BENCH_REF_HOST"], os.environ["BENCH_REF_NETNS"]))
            if only != "log":
                bench_network(hosts, work)
            if only != "network":
                bench_logging(hosts, work)
        finally:
            networked.cleanup()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_daemon(work, benches):
    """The rows that need no network (images, registry, containers, build, runtime): each of
    `benches`, against a pydockerd without networking and the reference daemon."""
    daemon = DaemonProcess(new_daemon_dir(), ["-b", "none"]).start()
    try:
        hosts = [("pydockerd", daemon.host)]
        if os.environ.get("BENCH_REF_HOST"):
            hosts.append(("reference", os.environ["BENCH_REF_HOST"]))
        for bench in benches:
            bench(hosts, work)
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        load_main(sys.argv[2])
    else:
        main()
