"""security.md section 6: the 25 checks of the security checklist, run against a live daemon.

This module is the index of the checklist: every check maps to the tests that prove it, here
(`::name`) or in another module (`file::name`). Each check is the command the checklist gives,
against a pydockerd with a busybox image, with `--network none`. A sub-check is skipped only
where this host lacks the path it is about (a masked /proc file the kernel does not have),
never because it fails.

 1 capabilities        ::test_check01_capability_set
 2 user, cap-drop      ::test_check02_a_non_root_user_has_no_effective_capabilities,
                       ::test_check02_cap_drop_all_empties_the_bounding_set,
                       ::test_check02_cap_drop_chown_refuses_chown
 3 no_new_privs        ::test_check03_no_new_privileges_only_when_asked
 4 masked files        ::test_check04_masked_file_is_dev_null
 5 masked directories  ::test_check05_masked_directory_is_empty_and_read_only
 6 /proc, /sys ro      ::test_check06_kernel_knobs_are_not_writable, ::test_check06_privileged_can_touch
 7 default mounts      ::test_check07_default_mount, ::test_check07_network_file_is_a_bind_mount,
                       ::test_check07_everything_under_sys_is_read_only
 8 --read-only         ::test_check08_read_only_root_and_network_files
 9 /dev                ::test_check09_dev_null_is_the_real_device,
                       ::test_check09_dev_holds_the_default_devices_and_no_host_disks, ::test_check09_dev_links
10 devices cgroup      ::test_check10_mknod_works_but_the_device_cannot_be_opened,
                       ::test_check10_a_char_device_outside_the_allow_list_cannot_be_written,
                       ::test_check10_exec_is_confined_too, ::test_check10_privileged_may_read_devices,
                       test_runtime_cli.py::test_device_with_read_only_permission
11 namespaces          ::test_check11_namespace_is_new, ::test_check11_command_is_pid_1
12 no fresh procfs     ::test_check12_new_user_namespace_cannot_mount_a_fresh_proc,
                       ::test_check12_without_seccomp_the_masks_still_stop_a_fresh_proc
13 image symlinks      ::test_check13_symlink_out_of_the_root_touches_nothing_on_the_host
14 hostname, DNS       ::test_check14_hostname_is_the_short_id,
                       ::test_check14_resolv_conf_has_no_loopback_nameserver, ::test_check14_hostname_flag
15 CVE-2024-21626      ::test_check15_workdir_through_a_leaked_fd_never_reaches_the_host,
                       ::test_check15_container_init_holds_only_stdio
16 CVE-2019-5736       ::test_check16_a_sealed_copy_refuses_every_write,
                       ::test_check16_the_fork_server_runs_from_a_sealed_memfd,
                       ::test_check16_exec_never_exposes_the_host_interpreter (default capabilities
                       and --cap-add SYS_PTRACE); test_monitor.py starts its fork servers from
                       the sealed copy too
17 docker cp escapes   test_cp_top_cli.py::test_cp_paths_stay_inside_the_container,
                       test_cp_top_cli.py::test_cp_symlinks_of_a_stopped_container_stay_inside
18 tar breakout        test_cp_top_cli.py::test_hostile_tars_stay_contained,
                       test_images_cli.py::test_hostile_tar_cannot_write_outside_the_layer,
                       test_archive.py::test_nested_symlink_pointing_outside_is_refused
19 no image binaries   test_cp_top_cli.py::test_compressed_upload_without_running_an_image_binary,
                       test_cp_top_cli.py::test_top_runs_the_hosts_ps_not_the_images
20 on-disk perms       ::test_check20_state_is_closed_to_other_users
21 the socket          ::test_check21_socket_is_0660_root_and_the_docker_group,
                       ::test_check21_a_non_member_gets_eacces_a_member_gets_in,
                       ::test_check21_without_a_docker_group_the_socket_is_root_root,
                       ::test_check21_the_socket_is_removed_on_stop;
                       also test_daemon.py::test_socket_is_0660
22 API errors          ::test_check22_api_error (the ten cases of the table, exact status and body),
                       ::test_check22_too_old_starts_below_1_12; also
                       test_daemon.py::test_error_answers_are_json, ::test_bad_create_bodies_are_400
23 names and IDs       ::test_check23_* (eight tests)
24 restart policy      ::test_check24_* (seven tests); also test_containers_cli.py restart tests
25 crash recovery      ::test_check25_policies_across_a_daemon_restart (kill -9 and clean stop),
                       ::test_check25_containers_killed_while_the_daemon_is_down,
                       ::test_check25_a_truncated_config_is_reported_and_the_rest_served;
                       also test_containers_cli.py::test_container_survives_a_daemon_kill_and_logs_every_line,
                       test_boot.py::test_restore_skips_a_corrupt_container. The data root on a
                       3 MiB filesystem during pull and load (ENOSPC): test_image_faults.py
Bonus                  test_images_cli.py::test_image_id_is_the_sha256_of_its_config (config sha256
                       is the Id, layer sha256s the DiffIDs),
                       test_images_cli.py::test_load_with_a_tampered_layer_fails_and_registers_nothing
                       (`invalid diffID`), ::test_bonus_a_manifest_layer_path_out_of_the_archive_is_refused,
                       test_images_cli.py::test_load_refuses_a_manifest_path_with_dotdot,
                       test_registry.py::test_tampered_manifest_fails_verification (wrong digest)

Where pydockerd answers otherwise than the table, on purpose:
  * 22: dockerd 20.10 (API 1.41, like pydockerd) takes API versions from 1.12, so /v1.12 is
    served and /v1.11 is too old; its Content-Type message is 20.10's.
  * 25: pydockerd restores live by default (design.md section 3: monitors outlive the
    daemon), as dockerd does with --live-restore. So a container running through a daemon
    restart, clean or kill -9, keeps running whatever its policy; "none: not running, exit
    code recorded" is the case of a container whose process died while the daemon was down,
    and there `always` starts it again.
"""
import fcntl
import grp
import hashlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import sysconfig
import tarfile
import time

import pytest

import pydockerd

# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import (api_create, docker_popen, err, inspect, out, parse_timestamp,
                                retire_daemon, run, run_detached, start_busybox_daemon, wait_for,
                                wait_until_restarted, wait_until_restarts_end, write_docker_archive)
from conftest import build_busybox_rootfs
from drivers import exeseal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

DEFAULT_CAPS = "00000000a80425fb"
LOOP = "while true; do sleep 0.1; done"


def in_container(daemon, script, *options, check=True):
    """`docker run --rm --network none OPTIONS busybox sh -c SCRIPT`."""
    return run(daemon, "--rm", *(options + ("busybox", "sh", "-c", script)), check=check)


# -- check 1: capabilities ----------------------------------------------------------------

@pytest.fixture(scope="module")
def capability_sets(daemon):
    status = out(run(daemon, "--rm", "busybox", "grep", "-E", "^Cap(Inh|Prm|Eff|Bnd|Amb)",
                     "/proc/self/status"))
    return dict(line.split(":\t") for line in status.splitlines())


@pytest.mark.parametrize("name,expected", [
    ("CapInh", "0000000000000000"), ("CapAmb", "0000000000000000"),
    ("CapPrm", DEFAULT_CAPS), ("CapEff", DEFAULT_CAPS), ("CapBnd", DEFAULT_CAPS),
])
def test_check01_capability_set(capability_sets, name, expected):
    assert capability_sets[name] == expected


# -- checks 2 and 3: capabilities of a user, dropped capabilities, no_new_privileges -------

def status_fields(daemon, *options):
    status = out(run(daemon, "--rm", *options, "busybox", "grep", "-E", "^(Cap(Eff|Bnd)|NoNewPrivs)",
                     "/proc/self/status"))
    return dict(line.split(":\t") for line in status.splitlines())


def test_check02_a_non_root_user_has_no_effective_capabilities(daemon):
    fields = status_fields(daemon, "--user", "1000:1000")
    assert (fields["CapEff"], fields["CapBnd"]) == ("0000000000000000", DEFAULT_CAPS)


def test_check02_cap_drop_all_empties_the_bounding_set(daemon):
    assert status_fields(daemon, "--cap-drop", "ALL")["CapBnd"] == "0000000000000000"


def test_check02_cap_drop_chown_refuses_chown(daemon):
    result = in_container(daemon, "chown 100 /tmp", "--cap-drop", "chown", check=False)
    assert result.returncode != 0 and "Operation not permitted" in err(result)


def test_check03_no_new_privileges_only_when_asked(daemon):
    assert status_fields(daemon)["NoNewPrivs"] == "0"
    assert status_fields(daemon, "--security-opt", "no-new-privileges")["NoNewPrivs"] == "1"


# -- check 4: masked files ----------------------------------------------------------------

MASKED_FILES = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/proc/interrupts"]


@pytest.mark.parametrize("path", MASKED_FILES)
def test_check04_masked_file_is_dev_null(daemon, path):
    if not os.path.exists(path):
        pytest.skip("this kernel has no %s" % path)
    result = in_container(daemon, 'stat -c "%%F %%t:%%T" %s; wc -c < %s' % (path, path))
    assert out(result).splitlines() == ["character special file 1:3", "0"]


# -- check 5: masked directories ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/proc/acpi", "/proc/scsi", "/sys/firmware"])
def test_check05_masked_directory_is_empty_and_read_only(daemon, path):
    if not os.path.isdir(path):
        pytest.skip("this host has no %s" % path)
    result = in_container(daemon, "ls -A %s; touch %s/x" % (path, path), check=False)
    assert result.stdout == b""
    assert "Read-only file system" in err(result)
    assert result.returncode != 0


# -- check 6: read-only /proc and /sys --------------------------------------------------------

@pytest.mark.parametrize("script", [
    "touch /proc/sysrq-trigger",
    "echo 1 > /proc/sys/vm/drop_caches",
    "touch /sys/kernel/profiling",
])
def test_check06_kernel_knobs_are_not_writable(daemon, script):
    path = script.split()[-1]
    if not os.path.exists(path):
        pytest.skip("this host has no %s" % path)
    result = in_container(daemon, script, check=False)
    assert result.returncode != 0
    assert re.search(r"Read-only file system|Permission denied", err(result)), err(result)


@pytest.mark.parametrize("path", ["/proc/sysrq-trigger", "/sys/kernel/profiling"])
def test_check06_privileged_can_touch(daemon, path):
    if not os.path.exists(path):
        pytest.skip("this host has no %s" % path)
    assert in_container(daemon, "touch " + path, "--privileged").returncode == 0


# -- check 7: the default mounts -------------------------------------------------------------

@pytest.fixture(scope="module")
def container_mounts(daemon):
    """`mount` inside a container: {target: (type, {options})}."""
    mounts = {}
    for line in out(run(daemon, "--rm", "busybox", "mount")).splitlines():
        match = re.match(r"^(\S+) on (\S+) type (\S+) \((.*)\)$", line)
        assert match, line
        mounts[match.group(2)] = (match.group(3), set(match.group(4).split(",")))
    return mounts


@pytest.mark.parametrize("target,fstype,options", [
    ("/proc", "proc", {"nosuid", "nodev", "noexec"}),
    ("/dev", "tmpfs", {"nosuid", "mode=755"}),
    ("/dev/pts", "devpts", {"nosuid", "noexec", "gid=5", "mode=620", "ptmxmode=666"}),
    ("/sys", "sysfs", {"ro", "nosuid", "nodev", "noexec"}),
    ("/dev/mqueue", "mqueue", {"nosuid", "nodev", "noexec"}),
    ("/dev/shm", "tmpfs", {"nosuid", "nodev", "noexec", "size=65536k"}),
])
def test_check07_default_mount(container_mounts, target, fstype, options):
    assert target in container_mounts, sorted(container_mounts)
    found_type, found_options = container_mounts[target]
    assert found_type == fstype
    assert options <= found_options, found_options


@pytest.mark.parametrize("target", ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"])
def test_check07_network_file_is_a_bind_mount(container_mounts, target):
    assert target in container_mounts


def test_check07_everything_under_sys_is_read_only(container_mounts):
    under_sys = {t: o for t, (_, o) in container_mounts.items() if t == "/sys" or t.startswith("/sys/")}
    assert under_sys
    assert all("ro" in options for options in under_sys.values()), under_sys


# -- check 8: --read-only ---------------------------------------------------------------

def test_check08_read_only_root_and_network_files(daemon):
    result = in_container(daemon, "touch /file /etc/hosts /etc/resolv.conf /etc/hostname; "
                          "mount | grep devpts", "--read-only", check=False)
    assert err(result).count("Read-only file system") == 4
    devpts = out(result).splitlines()
    assert len(devpts) == 1 and "rw" in devpts[0].split("(")[1].rstrip(")").split(",")


# -- check 9: /dev ----------------------------------------------------------------------------

def test_check09_dev_null_is_the_real_device(daemon):
    fields = out(in_container(daemon, "ls -l /dev/null")).split()
    assert fields[:6] == ["crw-rw-rw-", "1", "root", "root", "1,", "3"]


def test_check09_dev_holds_the_default_devices_and_no_host_disks(daemon):
    entries = set(out(in_container(daemon, "ls /dev")).split())
    required = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
                "mqueue", "fd", "stdin", "stdout", "stderr"}
    assert required <= entries
    assert entries - required <= {"console", "core"}, entries - required


def test_check09_dev_links(daemon):
    result = in_container(daemon, "readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stderr")
    assert out(result).splitlines() == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/2"]


# -- check 10: the devices cgroup keeps CAP_MKNOD harmless -----------------------------------

def readable_block_device():
    """major, minor of a block device root may open here (the sandbox forbids some), so that
    EPERM inside a container can only come from the devices cgroup."""
    node = "/tmp/pyd-blockprobe-%d" % os.getpid()
    for entry in sorted(os.listdir("/sys/dev/block")):
        major, minor = (int(part) for part in entry.split(":"))
        try:
            os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
            os.close(os.open(node, os.O_RDONLY))
            return major, minor
        except OSError:
            continue
        finally:
            if os.path.lexists(node):
                os.unlink(node)
    pytest.skip("no block device is readable by root on this host")


def test_check10_mknod_works_but_the_device_cannot_be_opened(daemon):
    major, minor = readable_block_device()
    script = "mknod /tmp/d b %d %d && head -c512 /tmp/d >/dev/null" % (major, minor)
    result = run(daemon, "--rm", "busybox", "sh", "-c", script, check=False)
    assert result.returncode != 0
    assert "Operation not permitted" in err(result)


def test_check10_a_char_device_outside_the_allow_list_cannot_be_written(daemon):
    result = run(daemon, "--rm", "busybox", "sh", "-c", "mknod /tmp/k c 1 11 && echo probe > /tmp/k",
                 check=False)
    assert result.returncode != 0
    assert "Operation not permitted" in err(result)


def test_check10_exec_is_confined_too(daemon):
    major, minor = readable_block_device()
    cid = run_detached(daemon, "busybox", "sleep", "60")
    result = daemon.docker("exec", cid, "sh", "-c", "mknod /tmp/d b %d %d && head -c512 /tmp/d"
                           % (major, minor), check=False)
    assert result.returncode != 0
    assert "Operation not permitted" in err(result)


def test_check10_privileged_may_read_devices(daemon):
    major, minor = readable_block_device()
    script = "mknod /tmp/d b %d %d && head -c512 /tmp/d >/dev/null && echo read" % (major, minor)
    assert out(run(daemon, "--rm", "--privileged", "busybox", "sh", "-c", script)) == "read"


# -- check 11: namespaces -------------------------------------------------------------------

NAMESPACES = ["mnt", "uts", "ipc", "pid", "net"]


@pytest.fixture(scope="module")
def container_namespaces(daemon):
    script = "for n in %s; do readlink /proc/self/ns/$n; done" % " ".join(NAMESPACES)
    return dict(zip(NAMESPACES, out(in_container(daemon, script)).splitlines()))


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_check11_namespace_is_new(container_namespaces, namespace):
    host = os.readlink("/proc/self/ns/%s" % namespace)
    assert container_namespaces[namespace].startswith(namespace + ":[")
    assert container_namespaces[namespace] != host


def test_check11_command_is_pid_1(daemon):
    assert out(in_container(daemon, "echo $$")) == "1"


# -- check 12: no bare /proc after pivot_root ---------------------------------------------------

def test_check12_new_user_namespace_cannot_mount_a_fresh_proc(daemon):
    result = run(daemon, "--rm", "busybox", "unshare", "-mrpf", "sh", "-c",
                 "mount -t proc none /proc && echo ESCAPED", check=False)
    assert b"ESCAPED" not in result.stdout


def test_check12_without_seccomp_the_masks_still_stop_a_fresh_proc(daemon):
    """The same with seccomp off (as the checklist runs it on Docker): the user namespace is
    made, so it is pivot_root and the masked /proc paths that must refuse the new procfs."""
    result = run(daemon, "--rm", "--security-opt", "seccomp=unconfined", "busybox",
                 "unshare", "-mrpf", "sh", "-c",
                 "echo INSIDE; mount -t proc none /proc && echo ESCAPED", check=False)
    assert b"INSIDE" in result.stdout, err(result)
    assert b"ESCAPED" not in result.stdout


# -- check 13: image symlinks that point out of the root ---------------------------------------

@pytest.mark.parametrize("trap", ["proc", "dev", "etc/hosts"])
def test_check13_symlink_out_of_the_root_touches_nothing_on_the_host(daemon, tmp_path, trap):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hosts").write_text("ORIGINAL\n")
    target = str(outside / "hosts") if trap == "etc/hosts" else str(outside)
    rootfs = build_busybox_rootfs(str(tmp_path / "rootfs"))
    victim = os.path.join(rootfs, trap)
    if os.path.isdir(victim):
        os.rmdir(victim)
    os.symlink(target, victim)
    image = "evil-%s:latest" % trap.replace("/", "-")
    daemon.docker("load", "-i", write_docker_archive(rootfs, str(tmp_path / "evil.tar"), image))
    try:
        daemon.docker("run", "--rm", "--network", "none", image, "sh", "-c",
                      "echo PWNED > /etc/hosts", check=False)
    finally:
        daemon.docker("rmi", "-f", image, check=False)
    assert sorted(os.listdir(str(outside))) == ["hosts"]
    assert (outside / "hosts").read_text() == "ORIGINAL\n"
    with open("/proc/self/mounts") as mounts:
        assert str(outside) not in mounts.read()


# -- check 14: hostname, hosts, DNS ---------------------------------------------------------

def test_check14_hostname_is_the_short_id(daemon):
    cid = run_detached(daemon, "busybox", "sh", "-c", LOOP)
    assert out(daemon.docker("exec", cid, "hostname")) == cid[:12]


def test_check14_resolv_conf_has_no_loopback_nameserver(daemon):
    servers = [line.split()[1] for line in
               out(run(daemon, "--rm", "busybox", "cat", "/etc/resolv.conf")).splitlines()
               if line.startswith("nameserver")]
    assert servers
    assert not [server for server in servers if server.startswith("127.")]
    with open("/etc/resolv.conf") as host:
        host_servers = [line.split()[1] for line in host
                        if line.startswith("nameserver") and not line.split()[1].startswith("127.")]
    if host_servers:
        assert servers == host_servers


def test_check14_hostname_flag(daemon):
    assert out(run(daemon, "--rm", "--hostname", "foo.bar", "busybox", "hostname")) == "foo.bar"


# -- check 15: CVE-2024-21626, no leaked descriptors ------------------------------------------

@pytest.fixture
def host_mark():
    path = "/HOSTMARK_%d" % os.getpid()
    open(path, "w").close()
    yield os.path.basename(path)
    os.unlink(path)


def test_check15_workdir_through_a_leaked_fd_never_reaches_the_host(daemon, host_mark):
    for fd in range(3, 21):
        result = run(daemon, "--rm", "-w", "/proc/self/fd/%d" % fd, "busybox", "ls", "../../..",
                     check=False)
        assert host_mark.encode() not in result.stdout + result.stderr, fd


def test_check15_container_init_holds_only_stdio(daemon):
    cid = run_detached(daemon, "busybox", "sleep", "60")
    pid = inspect(daemon, cid)["State"]["Pid"]
    fds = {int(fd): os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid)}
    assert sorted(fds) == [0, 1, 2], fds
    for target in fds.values():
        assert re.match(r"^(pipe:\[\d+\]|/dev/pts/\d+|/dev/null)$", target), fds


# -- check 16: CVE-2019-5736, the host's interpreter never behind a container's /proc/<pid>/exe

HOST_PREFIX = os.path.realpath(sys.prefix)

# The attacker (security.md check 16): /bin/sh becomes `#!/proc/self/exe`, so each `docker exec
# ctr /bin/sh` re-executes whatever the exec'd process runs, dumpable, in the container; a loop
# records every exe link it can read and tries to open each for writing (writing only into a
# memfd, to prove the seal: never into a file that might be the host's). With CAP_SYS_PTRACE
# it also reads the maps of pid 1 (the --init reaper, a fork of the fork server) and tries
# /proc/1/map_files on a library mapped from the host's prefix. (This host's kernel, 6.18,
# refuses the `#!/proc/self/exe` re-exec with ENOENT when the running exe lies outside the
# caller's mount namespace, as it does for nsenter; so without CAP_SYS_PTRACE, which lets it
# read the exe link of the non-dumpable helpers and of the reaper, the attacker sees busybox.)
ATTACKER = r"""
rm /bin/sh && printf '#!/proc/self/exe\n' > /bin/sh && chmod 755 /bin/sh
note() { grep -qxF "$1" /tmp/seen || echo "$1" >> /tmp/seen; }
touch /tmp/seen
range=$(grep -m1 " $PREFIX/" /proc/1/maps 2>/dev/null | cut -d' ' -f1)
if [ -n "$range" ]; then
  if ( exec 3</proc/1/map_files/$range ) 2>/dev/null; then note mapfile-opened; else note mapfile-refused; fi
fi
echo ready > /tmp/ready
while :; do
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" = "$$" ] && continue
    l=$(readlink "$d/exe" 2>/dev/null) || continue
    case "$l" in
      /memfd:*) if ( exec 3<>"$d/exe" && printf X >&3 ) 2>/dev/null; then r=written; else r=refused; fi ;;
      *) if ( exec 3<>"$d/exe" ) 2>/dev/null; then r=opened; else r=refused; fi ;;
    esac
    note "$r $l"
  done
done
"""


def sha256_of(path):
    with open(path, "rb") as data:
        return hashlib.sha256(data.read()).hexdigest()


def daemon_children(daemon):
    with open("/proc/%d/task/%d/children" % (daemon.proc.pid, daemon.proc.pid)) as children:
        return [int(pid) for pid in children.read().split()]


def fork_server_pid(daemon):
    for pid in daemon_children(daemon):
        with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
            if b"monitor.serve_forks" in cmdline.read():
                return pid
    raise AssertionError("the daemon has no fork server")


def host_interpreter_files(daemon):
    """The daemon's interpreter file (sys.executable resolved; the daemon itself still runs
    from it) and every file it maps from the interpreter's prefix (libpython, lib-dynload)."""
    files = {os.path.realpath(sys.executable)}
    with open("/proc/%d/maps" % daemon.proc.pid) as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith(HOST_PREFIX + "/"):
                files.add(fields[5].strip())
    return {path: sha256_of(path) for path in sorted(files)}


def test_check16_a_sealed_copy_refuses_every_write(tmp_path):
    source = tmp_path / "interpreter"
    source.write_bytes(b"\x7fELF" + os.urandom(100000))
    sealed = exeseal.seal_executable(str(source))
    try:
        assert exeseal.is_sealed(sealed.fd)
        assert os.readlink(sealed.path) == "/memfd:interpreter (deleted)"
        with open(sealed.path, "rb") as copy:
            assert copy.read() == source.read_bytes()
        writable = os.open(sealed.path, os.O_RDWR)  # the opening succeeds; no change does
        try:
            for change in (lambda: os.write(writable, b"X"), lambda: os.ftruncate(writable, 0),
                           lambda: os.ftruncate(writable, 1 << 30),
                           lambda: fcntl.fcntl(writable, fcntl.F_ADD_SEALS, 0)):
                with pytest.raises(PermissionError):
                    change()
        finally:
            os.close(writable)
    finally:
        sealed.close()
    with open(str(source), "rb") as original:
        assert not exeseal.is_sealed(original.fileno())


def test_check16_the_fork_server_runs_from_a_sealed_memfd(daemon):
    assert os.readlink("/proc/%d/exe" % daemon.proc.pid) == os.path.realpath(sys.executable)
    server = fork_server_pid(daemon)
    assert re.match(r"^/memfd:python[0-9.]* \(deleted\)$", os.readlink("/proc/%d/exe" % server))
    exe = os.open("/proc/%d/exe" % server, os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert exeseal.is_sealed(exe)
        with open("/proc/self/fd/%d" % exe, "rb") as copy:
            assert hashlib.sha256(copy.read()).hexdigest() == sha256_of(os.path.realpath(sys.executable))
    finally:
        os.close(exe)
    cid = run_detached(daemon, "--init", "busybox", "sleep", "60")
    reaper = inspect(daemon, cid)["State"]["Pid"]  # pid 1 inside: a fork of the fork server
    assert os.readlink("/proc/%d/exe" % reaper) == os.readlink("/proc/%d/exe" % server)


@pytest.mark.parametrize("capabilities", [(), ("--cap-add", "SYS_PTRACE")], ids=["default", "SYS_PTRACE"])
def test_check16_exec_never_exposes_the_host_interpreter(daemon, capabilities):
    before = host_interpreter_files(daemon)
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        assert [path for path in before if "/libpython" in path], before
    cid = run_detached(daemon, "--init", *capabilities, "-e", "PREFIX=" + HOST_PREFIX,
                       "busybox", "/bin/busybox", "sh", "-c", ATTACKER)
    wait_for(lambda: daemon.docker("exec", cid, "test", "-e", "/tmp/ready", check=False).returncode == 0,
             what="the attacker to start")
    for _ in range(50):
        daemon.docker("exec", cid, "/bin/sh", "-c", "true", check=False)
    seen = out(daemon.docker("exec", cid, "cat", "/tmp/seen")).splitlines()
    daemon.docker("rm", "-f", cid)
    assert host_interpreter_files(daemon) == before
    links = {line.split(" ", 1)[1] for line in seen if " " in line}
    assert links, seen
    assert links <= {"/bin/busybox"} | {link for link in links if link.startswith("/memfd:")}, seen
    assert not [line for line in seen if line.startswith("written")], seen
    if capabilities:
        # pid 1 is always there for a CAP_SYS_PTRACE attacker, and map_files stays shut to it
        assert any(link.startswith("/memfd:python") for link in links), seen
        assert "mapfile-refused" in seen and "mapfile-opened" not in seen, seen


# -- check 23: names and IDs through the API -------------------------------------------------

def create(daemon, name=None):
    return api_create(daemon, {"Image": "busybox", "Cmd": ["true"],
                               "HostConfig": {"NetworkMode": "none"}}, name=name)


@pytest.mark.parametrize("name", ["a", "x/y"])
def test_check23_invalid_name_is_400(daemon, name):
    status, body = create(daemon, name)
    assert status == 400
    assert body["message"] == ("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                               "are allowed" % name)


def test_check23_leading_slash_is_accepted(daemon):
    status, body = create(daemon, "/ok1")
    assert status == 201
    assert inspect(daemon, body["Id"])["Name"] == "/ok1"


def test_check23_duplicate_name_is_409(daemon):
    first = create(daemon, "twice")[1]["Id"]
    status, body = create(daemon, "twice")
    assert status == 409
    assert body["message"] == (
        'Conflict. The container name "/twice" is already in use by container "%s". You have '
        'to remove (or rename) that container to be able to reuse that name.' % first)


def test_check23_ambiguous_prefix_is_400(daemon):
    seen = set()
    while True:
        cid = create(daemon)[1]["Id"]
        if cid[0] in seen:
            break
        seen.add(cid[0])
    response = daemon.request("GET", "/containers/%s/json" % cid[0])
    assert response.status == 400
    assert response.json()["message"].lower() == "multiple ids found with provided prefix: " + cid[0]


def test_check23_unknown_container_is_404(daemon):
    response = daemon.request("GET", "/containers/nosuch/json")
    assert response.status == 404
    assert response.json()["message"] == "No such container: nosuch"


@pytest.mark.parametrize("name", ["../../etc", "..%2F..%2Fetc"])
def test_check23_a_path_as_a_name_is_404_never_a_file(daemon, name):
    response = daemon.request("GET", "/containers/%s/json" % name)
    assert response.status == 404
    assert "message" in response.json()
    assert b"root:" not in response.body


def test_check23_cli_inspect_of_a_path_is_no_such_object(daemon):
    result = daemon.docker("inspect", "../../etc", check=False)
    assert result.returncode != 0
    assert "No such object" in err(result)
    assert "root:" not in result.stdout.decode()


def test_check23_ids_are_64_hex_and_not_all_digits(daemon):
    for _ in range(3):
        cid = run_detached(daemon, "busybox", "true")
        assert re.match(r"^[0-9a-f]{64}$", cid) and not cid[:12].isdigit()


# -- check 24: restart policies --------------------------------------------------------------

def test_check24_on_failure_3(daemon):
    cid = run_detached(daemon, "--restart=on-failure:3", "busybox", "false")
    wait_until_restarts_end(daemon, cid, 3)
    assert out(daemon.docker("inspect", "-f", "{{.RestartCount}} {{.State.Running}}", cid)) == "3 false"


def test_check24_default_policy_is_no(daemon):
    cid = create(daemon)[1]["Id"]
    assert inspect(daemon, cid)["HostConfig"]["RestartPolicy"]["Name"] == "no"


def test_check24_always_restarts_after_kill_9_of_the_container(daemon):
    cid = run_detached(daemon, "--restart=always", "busybox", "sh", "-c", LOOP)
    pid = inspect(daemon, cid)["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until_restarted(daemon, cid, pid)


def test_check24_autoremove_with_restart_is_400(daemon):
    status, body = api_create(daemon, {"Image": "busybox", "HostConfig": {
        "NetworkMode": "none", "AutoRemove": True, "RestartPolicy": {"Name": "always"}}})
    assert status == 400
    assert "can't create 'AutoRemove' container with restart policy" in body["message"]


def test_check24_unknown_policy_is_400(daemon):
    status, body = api_create(daemon, {"Image": "busybox", "HostConfig": {
        "NetworkMode": "none", "RestartPolicy": {"Name": "foo"}}})
    assert status == 400
    assert "invalid restart policy" in body["message"].lower() and "foo" in body["message"]


def test_check24_retry_count_without_on_failure_is_400(daemon):
    status, _ = api_create(daemon, {"Image": "busybox", "HostConfig": {
        "NetworkMode": "none", "RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}})
    assert status == 400


def test_check24_backoff_doubles_from_100ms(daemon):
    """The delay from one run's FinishedAt to the next run's StartedAt is 100 ms * 2^n."""
    cid = run_detached(daemon, "--restart=always", "busybox", "sh", "-c", "sleep 0.3; exit 1")
    runs = {}  # StartedAt -> {"count": RestartCount while it ran, "finished": FinishedAt}

    def observe():
        container = inspect(daemon, cid)
        state = container["State"]
        this_run = runs.setdefault(state["StartedAt"], {})
        if state["Running"] and not state["Restarting"]:
            this_run.setdefault("count", container["RestartCount"])
        if parse_timestamp(state["FinishedAt"]) > parse_timestamp(state["StartedAt"]):
            this_run["finished"] = state["FinishedAt"]
        return len([run_ for run_ in runs.values() if "count" in run_]) >= 5

    wait_for(observe, timeout=20, interval=0.01, what="five runs")
    daemon.docker("rm", "-f", cid)
    ordered = sorted(runs.items(), key=lambda item: parse_timestamp(item[0]))
    delays = {}
    for (_, run_), (next_started, _) in zip(ordered, ordered[1:]):
        if "count" in run_ and "finished" in run_:
            delays[run_["count"]] = (parse_timestamp(next_started).timestamp()
                                     - parse_timestamp(run_["finished"]).timestamp())
    assert len(delays) >= 3, runs
    # The gap is the backoff plus the next start's own cost, which a loaded machine stretches:
    # never shorter than the backoff, and short of the next doubling plus that cost.
    for count, delay in delays.items():
        backoff = 0.1 * 2 ** count
        assert backoff - 0.02 <= delay <= 2 * backoff + 0.4, (count, delays)


# -- check 20: on-disk permissions --------------------------------------------------------

def test_check20_state_is_closed_to_other_users(daemon):
    """The data root and each container's directory are 0710 or stricter and root's, its config
    0600; and no world-writable path under the data or exec root can be written by another
    user (the image layers' own 1777 /tmp directories are shut in by their parents)."""
    cid = out(run(daemon, "-d", "busybox", "sh", "-c", LOOP))
    container_dir = os.path.join(daemon.root, "containers", cid)
    for path in (daemon.root, container_dir):
        info = os.stat(path)
        assert stat.S_IMODE(info.st_mode) & ~0o710 == 0 and info.st_uid == 0, path
    assert stat.S_IMODE(os.stat(os.path.join(container_dir, "config.v2.json")).st_mode) == 0o600
    writable = []
    for top in (daemon.root, daemon.exec_root):
        for directory, names, files in os.walk(top):
            for name in names + files:
                path = os.path.join(directory, name)
                if not os.path.islink(path) and os.lstat(path).st_mode & stat.S_IWOTH:
                    writable.append(path)
    assert writable, "expected the image's /tmp to be world-writable, so the test means something"
    for path in writable:
        probe = subprocess.run(["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups",
                                "test", "-w", path])
        assert probe.returncode != 0, "another user can write %s" % path


# -- check 21: the API socket ------------------------------------------------------------------

def docker_group_id():
    """The gid the socket must carry: the docker group's, root's where there is none."""
    try:
        return grp.getgrnam("docker").gr_gid
    except KeyError:
        return 0


def curl_ping(daemon, *identity):
    """`curl --unix-socket <socket> http://localhost/_ping` as uid 1000 (setpriv identity)."""
    return subprocess.run(["setpriv", "--reuid", "1000", "--regid", "1000"] + list(identity)
                          + ["curl", "-sSv", "--unix-socket", daemon.socket, "http://localhost/_ping"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)


@pytest.fixture
def socket_reachable(daemon):
    """The test daemon's directory opened to others (mkdtemp makes it 0700), so that only the
    socket's own mode and group decide who gets in."""
    os.chmod(daemon.dir, 0o711)
    yield
    os.chmod(daemon.dir, 0o700)


def test_check21_socket_is_0660_root_and_the_docker_group(daemon):
    info = os.stat(daemon.socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o660, 0, docker_group_id())


def test_check21_a_non_member_gets_eacces_a_member_gets_in(daemon, socket_reachable):
    outsider = curl_ping(daemon, "--clear-groups")
    assert outsider.returncode == 7, outsider  # curl: could not connect
    assert "connect fail for %s: Permission denied" % daemon.socket in err(outsider)  # EACCES
    if docker_group_id() == 0:
        pytest.skip("no docker group on this host: only root may connect")
    member = curl_ping(daemon, "--groups", str(docker_group_id()))
    assert (member.returncode, member.stdout) == (0, b"OK"), member


def test_check21_without_a_docker_group_the_socket_is_root_root(monkeypatch):
    """This host has a docker group and -G names only existing groups (an unknown one stops
    the boot, as in dockerd), so the fallback is checked where the gid is chosen."""
    def no_such_group(name):
        raise KeyError(name)
    monkeypatch.setattr(grp, "getgrnam", no_such_group)
    assert pydockerd.socket_group_id("docker", "/var/run/docker.sock") == 0


def test_check21_the_socket_is_removed_on_stop(make_daemon):
    daemon = make_daemon()
    assert stat.S_ISSOCK(os.lstat(daemon.socket).st_mode)
    assert daemon.stop() == 0
    assert not os.path.lexists(daemon.socket)


# -- check 22: API errors, as dockerd answers them --------------------------------------------

JSON = {"Content-Type": "application/json"}
CREATE = "/containers/create"


def message(text):
    return {"message": text}


@pytest.mark.parametrize("method, path, body, headers, status, expected", [
    ("POST", CREATE, b'{"Image":"busybox"}', {"Content-Type": "text/plain"}, 400,
     message("Content-Type specified (text/plain) must be 'application/json'")),
    ("POST", CREATE, b"{invalid json", JSON, 400, "invalid JSON: "),
    ("POST", CREATE, b"{} trailing", JSON, 400, message("unexpected content after JSON")),
    ("POST", CREATE, b"", JSON, 400, message("config cannot be empty in order to create a container")),
    ("POST", CREATE, b'{"Image":"busybox","Bogus":1}', JSON, 201, None),
    ("POST", CREATE, b'{"Image":"busybox","HostConfig":{"Memory":NaN}}', JSON, 400,
     message("invalid JSON: invalid character 'N' looking for beginning of value")),
    ("POST", CREATE, b"[" * 10000, JSON, 400, message("invalid JSON: exceeded max depth")),
    ("GET", "/notfound", None, {}, 404, message("page not found")),
    ("GET", "/v1.999/version", None, {}, 400,
     message("client version 1.999 is too new. Maximum supported API version is 1.41")),
    ("GET", "/v1.11/version", None, {}, 400,
     message("client version 1.11 is too old. Minimum supported API version is 1.12, please "
             "upgrade your client to a newer version")),
], ids=["text-plain", "invalid-json", "trailing", "empty", "unknown-field", "NaN", "deep-nesting",
        "notfound", "too-new", "too-old"])
def test_check22_api_error(daemon, method, path, body, headers, status, expected):
    """Each case's exact status and body, always a JSON object ({"message": ...} for errors).
    For `{invalid json` the table gives only the prefix (Go's decoder words the rest)."""
    response = daemon.request(method, path, body=body, headers=headers)
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    if status == 201:
        assert list(answer) == ["Id", "Warnings"] and re.match(r"^[0-9a-f]{64}$", answer["Id"])
    elif isinstance(expected, str):
        assert list(answer) == ["message"] and answer["message"].startswith(expected), answer
    else:
        assert answer == expected
    assert daemon.request("GET", "/_ping").status == 200


def test_check22_too_old_starts_below_1_12(daemon):
    """dockerd 20.10's MinAPIVersion, which pydockerd shares: /v1.12 is served (the table's
    `too old` for it is the minimum of later dockerds)."""
    response = daemon.request("GET", "/v1.12/version")
    assert response.status == 200
    assert response.json()["MinAPIVersion"] == "1.12"


# -- check 25: crash recovery ---------------------------------------------------------------

@pytest.fixture
def own_daemon(busybox_archive):  # noqa: F811
    """A daemon of the test's own, which it may stop or kill -9 and start on the same dirs."""
    process = start_busybox_daemon(busybox_archive)
    yield process
    retire_daemon(process)


def stop_daemon(daemon, how):
    if how == "kill -9":
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
    else:
        assert daemon.stop() == 0


def running_with(daemon, name):
    state = inspect(daemon, name)["State"]
    return state["Pid"] if state["Running"] else None


@pytest.mark.parametrize("how", ["kill -9", "clean stop"])
def test_check25_policies_across_a_daemon_restart(own_daemon, how):
    """none and always keep running through the restart (live restore: the same process),
    a created-only `always` container is not started; names and `docker wait` still work."""
    daemon = own_daemon
    pids = {}
    for name, policy in (("none", "no"), ("always", "always")):
        run_detached(daemon, "--name", name, "--restart", policy, "busybox", "top")
        pids[name] = running_with(daemon, name)
    daemon.docker("create", "--name", "created-only", "--restart", "always", "busybox", "top")
    stop_daemon(daemon, how)
    daemon.start()
    assert {name: running_with(daemon, name) for name in pids} == pids
    created = inspect(daemon, "created-only")["State"]
    assert (created["Status"], created["Pid"], created["StartedAt"]) == ("created", 0, "0001-01-01T00:00:00Z")
    names = out(daemon.docker("ps", "-a", "--format", "{{.Names}}")).split()
    assert sorted(names) == ["always", "created-only", "none"]
    conflict = daemon.docker("create", "--name", "none", "busybox", "true", check=False)
    assert "is already in use by container" in err(conflict)
    waiter = docker_popen(daemon, "wait", "none")
    time.sleep(0.3)  # the wait is in place before the kill
    daemon.docker("kill", "none")
    assert waiter.communicate(timeout=20)[0].strip() == b"137"
    assert inspect(daemon, "none")["State"]["ExitCode"] == 137


def test_check25_containers_killed_while_the_daemon_is_down(own_daemon):
    """none: not running, its exit code recorded; always: started again."""
    daemon = own_daemon
    pids = {}
    for name, policy in (("none", "no"), ("always", "always")):
        run_detached(daemon, "--name", name, "--restart", policy, "busybox", "top")
        pids[name] = running_with(daemon, name)
    stop_daemon(daemon, "kill -9")
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(os.path.exists("/proc/%d" % pid) for pid in pids.values()),
             what="the containers to die")
    daemon.start()
    assert out(daemon.docker("wait", "none", timeout=20)) == "137"
    state = inspect(daemon, "none")["State"]
    assert (state["Running"], state["Status"], state["ExitCode"]) == (False, "exited", 137)
    restarted = wait_until_restarted(daemon, "always", pids["always"])
    assert restarted["State"]["Running"]


def test_check25_a_truncated_config_is_reported_and_the_rest_served(own_daemon):
    daemon = own_daemon
    keep = run_detached(daemon, "--name", "keep", "busybox", "top")
    broken = out(daemon.docker("create", "--name", "broken", "busybox", "true"))
    daemon.stop()
    open(os.path.join(daemon.root, "containers", broken, "config.v2.json"), "w").close()
    boot_log_starts = len(daemon.log())
    daemon.start()
    assert broken in daemon.log()[boot_log_starts:]
    assert out(daemon.docker("ps", "-a", "-q", "--no-trunc")) == keep
    assert daemon.request("GET", "/containers/%s/json" % broken).status == 404
    assert out(daemon.docker("exec", "keep", "echo", "served")) == "served"


# -- bonus: content addressability ---------------------------------------------------------

def test_bonus_a_manifest_layer_path_out_of_the_archive_is_refused(daemon, tmp_path):
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["climb:1"], "Layers": ["../x"]}]).encode()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in (("c.json", config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    images_before = out(daemon.docker("images", "-a", "-q"))
    result = daemon.docker("load", input=data.getvalue(), check=False)
    assert result.returncode != 0
    assert "outside the archive" in err(result) + out(result)
    assert out(daemon.docker("images", "-a", "-q")) == images_before
