"""Volumes end to end (issue 12): the real docker CLI (and docker-compose) against a pydockerd.

Named volumes that outlive their containers, anonymous ones from an image's VOLUME (its content
copied in with owner and mode) and from `-v /path`, `rm -v`, --volumes-from, prune, a volume in
use refused, sizes in `system df`, local volumes with a tmpfs or a bind mounted on _data while
used, events, and references that survive a restart of the daemon. One daemon for the module
(every container and volume removed after each test); the restart test gets one of its own.
"""
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

from conftest import build_busybox_rootfs
# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import (err, host_daemon_env, inspect, out, remove_all_containers,
                                retire_daemon, run, run_detached, start_busybox_daemon,
                                wait_for, wait_until_exited)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

TMPFS_OPTS = ("-o", "type=tmpfs", "-o", "device=tmpfs")


@pytest.fixture(autouse=True)
def no_volumes_left(daemon):  # noqa: F811
    """Remove every container, then every volume, after each test."""
    yield
    remove_all_containers(daemon)
    for name in out(daemon.docker("volume", "ls", "-q")).split():
        daemon.docker("volume", "rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def volume_image(daemon, tmp_path_factory):  # noqa: F811
    """volimage: busybox plus /data (owner 1:50, mode 0750) holding sub/f (65534:65534, 0640),
    imported with `--change 'VOLUME /data'`."""
    directory = tmp_path_factory.mktemp("volimage")
    rootfs = build_busybox_rootfs(str(directory / "rootfs"))
    tar_path = str(directory / "rootfs.tar")
    with tarfile.open(tar_path, "w") as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
        for name, kind, mode, owner, data in (
                ("data", tarfile.DIRTYPE, 0o750, (1, 50), None),
                ("data/sub", tarfile.DIRTYPE, 0o755, (0, 0), None),
                ("data/sub/f", tarfile.REGTYPE, 0o640, (65534, 65534), b"from the image\n")):
            info = tarfile.TarInfo(name)
            info.type, info.mode, (info.uid, info.gid) = kind, mode, owner
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data else None)
    daemon.docker("import", "--change", "VOLUME /data", "--change", 'CMD ["sh"]', tar_path, "volimage")
    return "volimage"


def volume_names(daemon, *filters):
    return sorted(out(daemon.docker("volume", "ls", "-q", *filters)).split())


def anonymous_volume(daemon, container, destination="/data"):
    mounts = {m["Destination"]: m for m in inspect(daemon, container)["Mounts"]}
    return mounts[destination]["Name"]


def host_mounts():
    """Mount points of this (the test runner's) namespace, read only."""
    with open("/proc/self/mounts") as mounts:
        return {line.split()[1]: line.split()[2] for line in mounts}


def wait_unmounted(path):
    """`docker stop` returns once the container has stopped; its volumes go right after."""
    wait_for(lambda: path not in host_mounts(), timeout=10, what="%s to be unmounted" % path)


# -- docker volume create / ls / inspect / rm ------------------------------------------------

def test_volume_create_inspect_and_its_files_on_disk(daemon):
    assert out(daemon.docker("volume", "create", "plain")) == "plain"
    daemon.docker("volume", "create", "--label", "tier=db", *TMPFS_OPTS, "-o", "o=size=1m", "opted")
    plain, opted = json.loads(out(daemon.docker("volume", "inspect", "plain", "opted")))
    directory = os.path.join(daemon.root, "volumes", "plain")
    assert plain == {"CreatedAt": plain["CreatedAt"], "Driver": "local", "Labels": None,
                     "Mountpoint": os.path.join(directory, "_data"), "Name": "plain",
                     "Options": None, "Scope": "local"}
    assert os.path.isdir(plain["Mountpoint"]) and plain["CreatedAt"].endswith("Z")
    assert opted["Labels"] == {"tier": "db"}
    assert opted["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    with open(os.path.join(daemon.root, "volumes", "opted", "opts.json")) as opts:
        assert json.load(opts) == {"MountType": "tmpfs", "MountOpts": "size=1m",
                                   "MountDevice": "tmpfs", "Quota": {"Size": 0}}
    with open(os.path.join(directory, "metadata.json")) as metadata:
        assert json.load(metadata) == {"Name": "plain", "Driver": "local", "Labels": None,
                                       "Options": None}
    assert not os.path.exists(os.path.join(directory, "opts.json"))
    assert out(daemon.docker("volume", "create", "plain")) == "plain"   # dockerd's reuse
    daemon.docker("volume", "rm", "plain", "opted")
    assert volume_names(daemon) == [] and not os.path.exists(directory)
    missing = daemon.docker("volume", "rm", "plain", check=False)
    assert err(missing) == "Error response from daemon: get plain: no such volume"
    assert daemon.docker("volume", "rm", "-f", "plain").returncode == 0


def test_volume_ls_filters(daemon):
    daemon.docker("volume", "create", "--label", "tier=db", "alpha")
    daemon.docker("volume", "create", "--label", "tier=web", "beta")
    run(daemon, "--name", "user", "-v", "beta:/b", "busybox", "true")
    assert volume_names(daemon, "--filter", "label=tier=db") == ["alpha"]
    assert volume_names(daemon, "--filter", "label=tier") == ["alpha", "beta"]
    assert volume_names(daemon, "--filter", "name=^al") == ["alpha"]
    assert volume_names(daemon, "--filter", "driver=local") == ["alpha", "beta"]
    assert volume_names(daemon, "--filter", "dangling=true") == ["alpha"]
    assert volume_names(daemon, "--filter", "dangling=false") == ["beta"]
    bad = daemon.docker("volume", "ls", "--filter", "colour=red", check=False)
    assert err(bad) == "Error response from daemon: Invalid filter 'colour'"


# -- named and anonymous volumes in containers -----------------------------------------------

def test_named_volume_survives_rm_and_is_reused(daemon):
    run(daemon, "--name", "writer", "-v", "keep:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert inspect(daemon, "writer")["Mounts"] == [{
        "Type": "volume", "Name": "keep", "Source": os.path.join(daemon.root, "volumes/keep/_data"),
        "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}]
    daemon.docker("rm", "-v", "writer")   # -v takes anonymous volumes only
    assert volume_names(daemon) == ["keep"]
    assert out(run(daemon, "--rm", "-v", "keep:/data:ro", "busybox", "cat", "/data/f")) == "kept"


def test_image_volume_content_is_copied_with_owner_and_mode(daemon, volume_image):
    result = run(daemon, "--name", "img", volume_image, "sh", "-c",
                 'stat -c "%n %u:%g %a" /data /data/sub /data/sub/f; cat /data/sub/f')
    assert out(result).splitlines() == ["/data 1:50 750", "/data/sub 0:0 755",
                                        "/data/sub/f 65534:65534 640", "from the image"]
    name = anonymous_volume(daemon, "img")
    assert len(name) == 64 and volume_names(daemon) == [name]
    data = os.path.join(daemon.root, "volumes", name, "_data")
    assert os.stat(os.path.join(data, "sub/f")).st_uid == 65534
    # A named volume is filled by its first container only; later ones see what it holds.
    run(daemon, "--rm", "-v", "filled:/data", volume_image, "sh", "-c", "rm /data/sub/f")
    assert out(run(daemon, "--rm", "-v", "filled:/data", volume_image, "ls", "/data/sub")) == ""


def test_nocopy_leaves_a_new_volume_empty(daemon, volume_image):
    assert out(run(daemon, "--rm", "-v", "empty1:/data:nocopy", volume_image, "ls", "-A", "/data")) == ""
    assert out(run(daemon, "--rm", "--mount", "type=volume,src=empty2,dst=/data,volume-nocopy",
                   volume_image, "ls", "-A", "/data")) == ""
    assert out(run(daemon, "--rm", "--mount", "type=volume,dst=/data", volume_image,
                   "ls", "/data")) == "sub"


def test_rm_v_removes_anonymous_volumes_only(daemon, volume_image):
    daemon.docker("create", "--name", "ca", "--network", "none", volume_image)
    daemon.docker("create", "--name", "cb", "--network", "none", "-v", "named:/n", "-v", "/anon",
                  volume_image)
    kept = anonymous_volume(daemon, "ca")
    gone = {anonymous_volume(daemon, "cb"), anonymous_volume(daemon, "cb", "/anon")}
    assert volume_names(daemon) == sorted({kept, "named"} | gone)
    daemon.docker("rm", "ca")
    daemon.docker("rm", "-v", "cb")
    assert volume_names(daemon) == sorted([kept, "named"])
    assert volume_names(daemon, "--filter", "dangling=true") == sorted([kept, "named"])
    run(daemon, "--rm", "-v", "/scratch", "busybox", "true")   # --rm takes them too
    assert volume_names(daemon) == sorted([kept, "named"])


def test_volumes_from_shares_the_volumes_read_only_with_ro(daemon):
    run(daemon, "--name", "src", "-v", "shared:/data", "-v", "/anon", "busybox", "sh", "-c",
        "echo shared > /data/f; echo anon > /anon/g")
    both = run(daemon, "--rm", "--volumes-from", "src", "busybox", "sh", "-c",
               "cat /data/f /anon/g; echo more >> /data/f")
    assert out(both) == "shared\nanon"
    daemon.docker("create", "--name", "reader", "--network", "none", "--volumes-from", "src:ro",
                  "busybox", "touch", "/data/x")
    mounts = {m["Destination"]: m for m in inspect(daemon, "reader")["Mounts"]}
    assert mounts["/data"]["Name"] == "shared" and mounts["/data"]["RW"] is False
    assert mounts["/anon"]["Name"] == anonymous_volume(daemon, "src", "/anon")
    result = daemon.docker("start", "-a", "reader", check=False)
    assert result.returncode != 0 and "Read-only file system" in err(result)
    daemon.docker("rm", "-v", "reader")   # src's anonymous volume is src's: it stays
    assert anonymous_volume(daemon, "src", "/anon") in volume_names(daemon)


def test_volume_prune_removes_unused_local_volumes(daemon):
    for name in ("idle1", "idle2", "held"):
        daemon.docker("volume", "create", name)
    daemon.docker("volume", "create", "--label", "keep=1", "labelled")
    daemon.docker("volume", "create", *TMPFS_OPTS, "opted")
    daemon.docker("create", "--name", "holder", "--network", "none", "-v", "held:/h", "busybox")
    run(daemon, "--rm", "-v", "idle2:/d", "busybox", "sh", "-c", "head -c 3000 /dev/zero > /d/z")
    result = daemon.docker("volume", "prune", "-f", "--filter", "label!=keep")
    assert out(result).splitlines()[1:3] == ["idle1", "idle2"]
    assert out(result).splitlines()[-1] == "Total reclaimed space: 3kB"
    assert volume_names(daemon) == ["held", "labelled", "opted"]


def test_a_volume_in_use_cannot_be_removed(daemon):
    cid = out(daemon.docker("create", "--network", "none", "-v", "busy:/data", "busybox"))
    result = daemon.docker("volume", "rm", "busy", check=False)
    assert err(result) == "Error response from daemon: remove busy: volume is in use - [%s]" % cid
    assert daemon.request("DELETE", "/volumes/busy?force=1").status == 409
    daemon.docker("rm", cid)
    daemon.docker("volume", "rm", "busy")


def test_system_df_shows_volume_sizes(daemon):
    run(daemon, "--name", "sizer", "-v", "sized:/data", "busybox", "sh", "-c",
        "head -c 5000 /dev/zero > /data/a; ln /data/a /data/b; mkdir /data/d")
    daemon.docker("volume", "create", *TMPFS_OPTS, "opted")   # volumes with options are not sized
    volumes = daemon.request("GET", "/system/df").json()["Volumes"]
    assert [(v["Name"], v["UsageData"]) for v in volumes] == [("sized", {"RefCount": 1, "Size": 5000})]
    rows = [line.split() for line in out(daemon.docker("system", "df", "-v")).splitlines()]
    assert ["sized", "1", "5kB"] in rows
    summary = out(daemon.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Size}}"))
    assert "Local Volumes 1 5kB" in summary.splitlines()


def test_ps_volume_filter_and_the_mounts_of_inspect(daemon, tmp_path):
    daemon.docker("create", "--name", "fc", "--network", "none", "-v", "fv:/data",
                  "-v", "%s:/b:ro,rslave" % tmp_path, "--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576",
                  "busybox", "grep", " /t ", "/proc/mounts")
    assert "size=1024k" in out(daemon.docker("start", "-a", "fc"))
    assert inspect(daemon, "fc")["Mounts"][:2] == [
        {"Type": "bind", "Source": str(tmp_path), "Destination": "/b", "Mode": "ro,rslave",
         "RW": False, "Propagation": "rslave"},
        {"Type": "volume", "Name": "fv", "Source": os.path.join(daemon.root, "volumes/fv/_data"),
         "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}]
    assert inspect(daemon, "fc")["Mounts"][2]["Type"] == "tmpfs"
    for value in ("fv", "/data", str(tmp_path)):
        assert out(daemon.docker("ps", "-a", "--format", "{{.Names}}", "--filter", "volume=" + value)) == "fc"
    assert out(daemon.docker("ps", "-a", "-q", "--filter", "volume=other")) == ""


# -- local volumes with a filesystem of their own ---------------------------------------------

def test_tmpfs_volume_is_mounted_while_a_container_uses_it(daemon):
    daemon.docker("volume", "create", *TMPFS_OPTS, "-o", "o=size=3m", "tv")
    data = os.path.join(daemon.root, "volumes", "tv", "_data")
    first = run_detached(daemon, "-v", "tv:/t", "busybox", "sh", "-c",
                         "echo x > /t/f; df -k /t | tail -1; exec sleep 60")
    second = run_detached(daemon, "-v", "tv:/t", "busybox", "sh", "-c", "cat /t/f; exec sleep 60")
    assert host_mounts().get(data) == "tmpfs"
    assert out(daemon.docker("logs", first)).split()[1] == "3072"
    assert out(daemon.docker("logs", second)) == "x"
    daemon.docker("stop", "-t", "0", first)
    assert host_mounts().get(data) == "tmpfs"   # the second still uses it
    daemon.docker("stop", "-t", "0", second)
    wait_unmounted(data)
    result = run(daemon, "--rm", "--mount", "type=volume,src=mv,dst=/m,readonly,volume-opt=type=tmpfs,"
                 "volume-opt=device=tmpfs,volume-opt=o=size=1m,volume-label=made=here", "busybox",
                 "sh", "-c", "grep ' /m ' /proc/mounts")
    fstype, options = out(result).split()[2:4]
    assert fstype == "tmpfs" and "size=1024k" in options and options.startswith("ro,")
    made = json.loads(out(daemon.docker("volume", "inspect", "mv")))[0]
    assert made["Options"]["o"] == "size=1m" and made["Labels"] == {"made": "here"}


def test_bind_volume_mounts_its_device_and_never_empties_it(daemon, tmp_path):
    device = tmp_path / "device"
    device.mkdir()
    (device / "old").write_text("here before\n")
    daemon.docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=%s" % device, "bv")
    result = run(daemon, "--rm", "-v", "bv:/v", "busybox", "sh", "-c", "cat /v/old; echo new > /v/new")
    assert out(result) == "here before"
    assert (device / "new").read_text() == "new\n"
    assert os.path.join(daemon.root, "volumes", "bv", "_data") not in host_mounts()
    daemon.docker("volume", "rm", "bv")
    assert sorted(os.listdir(device)) == ["new", "old"]
    daemon.docker("volume", "create", "-o", "type=none", "-o", "o=bind,ro", "-o", "device=%s" % device, "ro")
    result = run(daemon, "--rm", "-v", "ro:/v", "busybox", "sh", "-c", "cat /v/new; touch /v/x",
                 check=False)
    assert out(result) == "new" and "Read-only file system" in err(result)
    failing = daemon.docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o",
                            "device=%s" % (tmp_path / "missing"), "broken")
    assert failing.returncode == 0   # dockerd mounts at first use: that is where it fails
    result = run(daemon, "--rm", "-v", "broken:/v", "busybox", "true", check=False)
    assert result.returncode == 125 and "failed to mount local volume" in err(result)
    assert volume_names(daemon) == ["broken", "ro"]
    daemon.docker("volume", "rm", "broken")   # the failed start left no reference behind


# -- bad input: dockerd's errors, nothing made -----------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("volume", "create", "a/b"), 'create a/b: "a/b" includes invalid characters for a local '
     'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
     'directory, use absolute path'),
    (("volume", "create", ".."), 'create ..: ".." includes invalid characters for a local volume '
     'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
     'directory, use absolute path'),
    (("volume", "create", "x"), "create x: volume name is too short, names should be at least two "
     "alphanumeric characters"),
    (("volume", "create", "-d", "nope", "vv"), 'create vv: error looking up volume plugin nope: '
     'plugin "nope" not found'),
    (("volume", "create", "-o", "colour=red", "vv"), 'create vv: invalid option: "colour"'),
    (("volume", "create", "-o", "o=size=1m", "vv"), 'create vv: missing required option: "device"'),
    (("volume", "create", "-o", "size=1g", "vv"), "create vv: quota size requested but no quota support"),
    (("run", "--network", "none", "-v", "a/b:/data", "busybox", "true"), 'create a/b: "a/b" '
     'includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are '
     'allowed. If you intended to pass a host directory, use absolute path'),
    (("run", "--network", "none", "-v", "ok1:/one", "-v", "ok2:/two", "--volumes-from", "nope",
      "busybox", "true"), "No such container: nope"),
    (("run", "--network", "none", "--volume-driver", "nope", "-v", "ok:/d", "busybox", "true"),
     'error looking up volume plugin nope: plugin "nope" not found'),
    (("run", "--network", "none", "-v", "ok:/d", "--mount",
      "type=volume,src=ok2,dst=/e,volume-opt=colour=red", "busybox", "true"),
     'create ok2: invalid option: "colour"'),
    (("run", "--network", "none", "-v", "ok:/d", "-v", "ok2:/d", "busybox", "true"),
     "Duplicate mount point: /d"),
    (("run", "--network", "none", "--mount", "type=volume,dst=/d,readonly", "busybox", "true"),
     'invalid mount config for type "volume": must not set ReadOnly mode when using anonymous volumes'),
    (("run", "--network", "none", "-v", "ok:/d", "-v", "/tmp:/b:rshared", "busybox", "true"),
     'invalid mount config for type "bind": propagation mode rshared is not supported by pydockerd yet'),
])
def test_bad_input_is_refused_with_dockerds_error_and_nothing_made(daemon, args, message):
    result = daemon.docker(*args, check=False)
    assert result.returncode != 0
    assert message in err(result), err(result)
    assert volume_names(daemon) == []
    assert out(daemon.docker("ps", "-aq")) == ""


def test_api_create_refuses_what_would_be_dropped(daemon):
    daemon.docker("volume", "create", "--label", "a=1", "same")
    body = json.dumps({"Name": "same", "Labels": {"a": "2"}})
    response = daemon.request("POST", "/volumes/create", body=body,
                              headers={"Content-Type": "application/json"})
    assert response.status == 409, response.body
    body = json.dumps({"Name": "../up"})
    response = daemon.request("POST", "/volumes/create", body=body,
                              headers={"Content-Type": "application/json"})
    assert response.status == 400 and b"includes invalid characters" in response.body
    assert volume_names(daemon) == ["same"]
    assert not os.path.exists(os.path.join(daemon.root, "up"))


# -- events ------------------------------------------------------------------------------

def test_volume_events(daemon):
    since = time.time()
    daemon.docker("volume", "create", "ev")
    cid = out(run(daemon, "-d", "-v", "ev:/d", "busybox", "true"))
    wait_until_exited(daemon, cid)
    daemon.docker("rm", cid)
    daemon.docker("volume", "rm", "ev")
    events = daemon.docker("events", "--since", "%.3f" % since, "--until", "%.3f" % (time.time() + 0.5),
                           "--filter", "type=volume", "--filter", "volume=ev",
                           "--format", "{{.Action}} {{json .Actor.Attributes}}")
    actions = [line.split(" ", 1) for line in out(events).splitlines()]
    assert [action for action, _ in actions] == ["create", "create", "mount", "unmount", "destroy"]
    attributes = {action: json.loads(text) for action, text in actions}
    assert attributes["mount"] == {"container": cid, "destination": "/d", "driver": "local",
                                   "propagation": "", "read/write": "true"}
    assert attributes["unmount"] == {"container": cid, "driver": "local"}
    assert attributes["destroy"] == {"driver": "local"}


# -- a daemon restart --------------------------------------------------------------------

def test_references_and_mounts_survive_a_daemon_restart(busybox_archive):  # noqa: F811
    process = start_busybox_daemon(busybox_archive)
    try:
        stopped = out(process.docker("create", "--network", "none", "-v", "held:/data", "busybox"))
        process.docker("volume", "create", *TMPFS_OPTS, "tv")
        running = run_detached(process, "-v", "tv:/t", "busybox", "sleep", "60")
        data = os.path.join(process.root, "volumes", "tv", "_data")
        process.stop(signal.SIGKILL)
        process.start()
        result = process.docker("volume", "rm", "held", check=False)
        assert err(result) == ("Error response from daemon: remove held: volume is in use - [%s]"
                               % stopped)
        result = process.docker("volume", "rm", "tv", check=False)
        assert "volume is in use - [%s]" % running in err(result)
        assert host_mounts().get(data) == "tmpfs"
        process.docker("stop", "-t", "0", running)
        wait_unmounted(data)
        process.docker("rm", stopped, running)
        process.docker("volume", "rm", "held", "tv")
    finally:
        retire_daemon(process)


# -- docker-compose's usual app: a named volume ------------------------------------------

COMPOSE_FILE = """\
version: "3"
services:
  app:
    image: busybox
    network_mode: none
    volumes: [data:/data]
    command: sh -c 'echo run >> /data/log; wc -l < /data/log'
volumes:
  data: {}
"""


def test_compose_app_keeps_its_named_volume_until_down_v(daemon, tmp_path):
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)

    def compose_run(*args):
        result = subprocess.run([compose, "-p", "volapp"] + list(args), cwd=str(tmp_path),
                                env=host_daemon_env(daemon), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=120)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode()
    assert "app_1  | 1" in compose_run("up", "--no-color")
    compose_run("down")
    assert volume_names(daemon) == ["volapp_data"]
    assert "app_1  | 2" in compose_run("up", "--no-color")
    compose_run("down", "-v")
    assert volume_names(daemon) == []
    assert out(daemon.docker("network", "ls", "-q", "--filter", "name=volapp")) == ""
