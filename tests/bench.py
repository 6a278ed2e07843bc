"""`make bench`: pydockerd's speed and memory, side by side with a reference daemon.

Set BENCH_REF_HOST=unix:///path/to/dockerd.sock (and BENCH_REF_PID=<dockerd pid>) to measure a
running dockerd 20.10 in the same run. Figures are printed, never asserted: speed goals live
here, not in the tests.
"""
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import DOCKER, DaemonProcess, new_daemon_dir  # noqa: E402

BOOTS = 5
IMPORT_MB = 100
IMAGE_COUNT = 200


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


def docker(host, *args, stdin=None):
    env = dict(os.environ, DOCKER_HOST=host)
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


def main():
    bench_boot()
    work = tempfile.mkdtemp(prefix="pyd-bench-", dir="/tmp")
    daemon = DaemonProcess(new_daemon_dir(), ["-b", "none"]).start()
    try:
        hosts = [("pydockerd", daemon.host)]
        if os.environ.get("BENCH_REF_HOST"):
            hosts.append(("reference", os.environ["BENCH_REF_HOST"]))
        bench_images(hosts, work)
    finally:
        daemon.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
