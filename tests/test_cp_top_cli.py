"""`docker top` and `docker cp` end to end (issue 11 item 5): the host's ps filtered by the
container's cgroup, the archive endpoints (HEAD/GET/PUT) both ways on running and stopped
containers, into volumes and bind mounts, and the escapes of security.md checks 17-19.
One daemon for the module."""
import base64
import io
import json
import os
import tarfile
import uuid

import pytest

from drivers import containerarchive, top
# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import err, out, run_detached

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


def sh(daemon, name, script):
    return out(daemon.docker("exec", name, "sh", "-c", script))


def path_stat(daemon, name, path):
    response = daemon.request("HEAD", "/containers/%s/archive?path=%s" % (name, path))
    header = response.headers.get("X-Docker-Container-Path-Stat")
    return response.status, json.loads(base64.b64decode(header)) if header else None


def make_tar(*entries):
    """entries: (name, type, data or linkname)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = value
                tar.addfile(info)
            elif kind == tarfile.DIRTYPE:
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    return buffer.getvalue()


def put_tar(daemon, name, path, data, query=""):
    return daemon.request("PUT", "/containers/%s/archive?path=%s%s" % (name, path, query),
                          body=data, headers={"Content-Type": "application/x-tar"})


# -- docker top ---------------------------------------------------------------------------

def test_top_lists_the_container_processes_only(daemon):
    run_detached(daemon, "--name", "t1", "busybox", "sh", "-c", "sleep 1001 & sleep 1002")
    listed = daemon.request("GET", "/containers/t1/top").json()
    assert listed["Titles"][:2] == ["UID", "PID"] and listed["Titles"][-1] == "CMD"
    commands = [row[-1] for row in listed["Processes"]]
    assert "sleep 1001" in commands and "sleep 1002" in commands
    assert all(len(row) == len(listed["Titles"]) for row in listed["Processes"])
    assert not any("pydockerd" in command for command in commands)
    shown = out(daemon.docker("top", "t1", "-o", "pid,args"))
    assert shown.splitlines()[0].split() == ["PID", "COMMAND"]
    assert "sleep 1001" in shown and "sleep 1002" in shown
    bsd = out(daemon.docker("top", "t1", "aux")).splitlines()
    assert bsd[0].split()[:2] == ["USER", "PID"] and len(bsd) == 3  # sh exec()s the last sleep


def test_top_of_a_stopped_container_or_with_bad_args(daemon):
    daemon.docker("create", "--name", "t2", "busybox", "true")
    response = daemon.request("GET", "/containers/t2/top")
    assert response.status == 409
    assert response.json()["message"] == "Container %s is not running" % inspect_id(daemon, "t2")
    run_detached(daemon, "--name", "t3", "busybox", "sleep", "60")
    response = daemon.request("GET", "/containers/t3/top?ps_args=--no-such-option")
    assert response.status == 500 and response.json()["message"].startswith("ps: ")


def test_top_runs_the_hosts_ps_not_the_images(daemon):
    """Check 19: a fake /bin/ps in the container is never run."""
    run_detached(daemon, "--name", "t4", "busybox", "sleep", "60")
    sh(daemon, "t4", "rm /bin/ps; printf '#!/bin/sh\\ntouch /marker\\n' > /bin/ps; chmod +x /bin/ps")
    assert "sleep 60" in out(daemon.docker("top", "t4"))
    assert daemon.docker("exec", "t4", "test", "-e", "/marker", check=False).returncode == 1


def inspect_id(daemon, name):
    return daemon.request("GET", "/containers/%s/json" % name).json()["Id"]


# -- docker cp -------------------------------------------------------------------------------

def test_cp_both_ways_on_a_running_container(daemon, tmp_path):
    run_detached(daemon, "--name", "c1", "busybox", "sleep", "60")
    source = tmp_path / "hello.txt"
    source.write_text("hello\n")
    os.chown(source, 1234, 4321)
    daemon.docker("cp", str(source), "c1:/tmp/")   # the tar's owners are kept (dockerd 17.06+)
    assert sh(daemon, "c1", "cat /tmp/hello.txt; stat -c '%u:%g' /tmp/hello.txt") == "hello\n1234:4321"
    daemon.docker("cp", "-a", str(source), "c1:/tmp/kept.txt")   # the rename; no User: kept too
    assert sh(daemon, "c1", "cat /tmp/kept.txt; stat -c '%u:%g' /tmp/kept.txt") == "hello\n1234:4321"
    assert sh(daemon, "c1", "ls /tmp") == "hello.txt\nkept.txt"
    sh(daemon, "c1", "mkdir -p /data/sub && echo deep > /data/sub/f && ln -s sub/f /data/link")
    daemon.docker("cp", "c1:/data", str(tmp_path / "out"))
    assert (tmp_path / "out" / "sub" / "f").read_text() == "deep\n"
    assert os.readlink(str(tmp_path / "out" / "link")) == "sub/f"
    daemon.docker("cp", "c1:/data/sub/f", str(tmp_path / "renamed"))
    assert (tmp_path / "renamed").read_text() == "deep\n"


def test_cp_archive_mode_gives_files_to_the_container_user(daemon, tmp_path):
    """copyUIDGID with a User: the user as the container's /etc/passwd names it."""
    run_detached(daemon, "--name", "c8", "--user", "nobody", "busybox", "sleep", "60")
    source = tmp_path / "f"
    source.write_text("x")
    os.chown(source, 1234, 4321)
    daemon.docker("cp", str(source), "c8:/tmp/plain")
    daemon.docker("cp", "-a", str(source), "c8:/tmp/archived")
    nobody = sh(daemon, "c8", "id -u; id -g").replace("\n", ":")
    assert sh(daemon, "c8", "stat -c '%u:%g' /tmp/plain /tmp/archived") == "1234:4321\n" + nobody
    daemon.docker("create", "--name", "c9", "--user", "ghost", "busybox", "true")  # stopped
    response = put_tar(daemon, "c9", "/tmp", make_tar(("f", tarfile.REGTYPE, b"x")), "&copyUIDGID=1")
    assert response.status == 400 and "unable to find user ghost" in response.json()["message"]


def test_cp_a_directory_into_a_stopped_container(daemon, tmp_path):
    daemon.docker("create", "--name", "c2", "busybox", "cat", "/etc/conf/a/b")
    tree = tmp_path / "conf" / "a"
    tree.mkdir(parents=True)
    (tree / "b").write_text("from the host\n")
    daemon.docker("cp", str(tmp_path / "conf"), "c2:/etc/")
    daemon.docker("start", "c2")
    assert out(daemon.docker("logs", "c2")) == "from the host"
    daemon.docker("cp", "c2:/etc/conf/a/b", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "from the host\n"


def test_cp_stdin_and_stdout_tars(daemon):
    run_detached(daemon, "--name", "c3", "busybox", "sleep", "60")
    upload = make_tar(("x/y.txt", tarfile.REGTYPE, b"yy"))
    daemon.docker("cp", "-", "c3:/tmp", input=upload)
    assert sh(daemon, "c3", "cat /tmp/x/y.txt") == "yy"
    downloaded = daemon.docker("cp", "c3:/tmp/x", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(downloaded)) as tar:
        assert tar.getnames() == ["x", "x/y.txt"]
        assert tar.extractfile("x/y.txt").read() == b"yy"


def test_cp_into_a_volume_and_a_bind_mount_running_and_stopped(daemon, tmp_path):
    bind = tmp_path / "bind"
    bind.mkdir()
    volume = "cpvol-" + uuid.uuid4().hex[:8]
    daemon.docker("create", "--name", "c4", "-v", "%s:/vol" % volume, "-v", "%s:/bind" % bind,
                  "busybox", "sleep", "60")
    try:
        source = tmp_path / "f"
        source.write_text("stopped\n")
        daemon.docker("cp", str(source), "c4:/bind/f1")
        daemon.docker("cp", str(source), "c4:/vol/f1")
        assert (bind / "f1").read_text() == "stopped\n"
        daemon.docker("start", "c4")
        source.write_text("running\n")
        daemon.docker("cp", str(source), "c4:/bind/f2")
        daemon.docker("cp", str(source), "c4:/vol/f2")
        assert (bind / "f2").read_text() == "running\n"
        assert sh(daemon, "c4", "cat /vol/f1 /vol/f2") == "stopped\nrunning"
        daemon.docker("rm", "-f", "c4")
        mountpoint = json.loads(out(daemon.docker("volume", "inspect", volume)))[0]["Mountpoint"]
        assert sorted(os.listdir(mountpoint)) == ["f1", "f2"]
    finally:
        daemon.docker("rm", "-f", "c4", check=False)
        daemon.docker("volume", "rm", volume, check=False)


def test_cp_errors_like_dockerd(daemon, tmp_path):
    run_detached(daemon, "--name", "c5", "busybox", "sleep", "60")
    response = daemon.request("GET", "/containers/c5/archive?path=/nosuch")
    assert response.status == 404
    assert response.json()["message"] == "Could not find the file /nosuch in container c5"
    assert path_stat(daemon, "c5", "/nosuch") == (404, None)
    result = daemon.docker("cp", "c5:/nosuch", str(tmp_path), check=False)
    assert result.returncode != 0 and "Could not find the file /nosuch" in err(result)
    # a file where a directory is expected
    response = put_tar(daemon, "c5", "/etc/passwd", make_tar(("f", tarfile.REGTYPE, b"x")))
    assert (response.status, response.json()["message"]) == (400, "extraction point is not a directory")
    # noOverwriteDirNonDir, both ways
    sh(daemon, "c5", "mkdir -p /d/dir && touch /d/file")
    for entry in (("dir", tarfile.REGTYPE, b"x"), ("file", tarfile.DIRTYPE, None)):
        response = put_tar(daemon, "c5", "/d", make_tar(entry), "&noOverwriteDirNonDir=1")
        assert response.status == 400
        assert response.json()["message"].startswith("cannot overwrite ")
    assert sh(daemon, "c5", "test -d /d/dir && test -f /d/file && echo kept") == "kept"
    source = tmp_path / "plain"
    source.write_text("x")
    result = daemon.docker("cp", str(source), "c5:/d/dir/", check=False)
    assert result.returncode == 0, err(result)
    result = daemon.docker("cp", str(source), "c5:/d/file/", check=False)   # a file, not a dir
    assert result.returncode != 0, out(result)
    assert "no such directory" in err(result)  # the CLI's words once the stat fails
    assert path_stat(daemon, "c5", "/d/file/")[0] == 400
    assert sh(daemon, "c5", "cat /d/file; ls /d") == "dir\nfile"


def test_cp_read_only_rootfs_refuses_outside_volumes(daemon, tmp_path):
    run_detached(daemon, "--name", "c6", "--read-only", "-v", "/scratch", "busybox", "sleep", "60")
    response = put_tar(daemon, "c6", "/tmp", make_tar(("f", tarfile.REGTYPE, b"x")))
    assert (response.status, response.json()["message"]) == (400, "container rootfs is marked read-only")
    assert put_tar(daemon, "c6", "/scratch", make_tar(("f", tarfile.REGTYPE, b"x"))).status == 200
    assert sh(daemon, "c6", "cat /scratch/f") == "x"


def test_path_stat_header(daemon):
    run_detached(daemon, "--name", "c7", "busybox", "sleep", "60")
    sh(daemon, "c7", "printf 12345 > /tmp/f; chmod 4750 /tmp/f; ln -s /tmp/f /tmp/l; mkdir /tmp/d")
    status, stat = path_stat(daemon, "c7", "/tmp/f")
    assert status == 200 and stat["name"] == "f" and stat["size"] == 5
    assert stat["mode"] == (1 << 23) | 0o750 and stat["linkTarget"] == ""
    assert stat["mtime"].endswith("Z") and stat["mtime"][:2] == "20"
    assert path_stat(daemon, "c7", "/tmp/l")[1]["mode"] & (1 << 27)
    assert path_stat(daemon, "c7", "/tmp/l")[1]["linkTarget"] == "/tmp/f"
    assert path_stat(daemon, "c7", "/tmp/d/")[1]["mode"] == (1 << 31) | 0o755
    response = daemon.request("GET", "/containers/c7/archive?path=/tmp/l")
    assert json.loads(base64.b64decode(response.headers["X-Docker-Container-Path-Stat"]))["name"] == "l"
    with tarfile.open(fileobj=io.BytesIO(response.body)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.issym(), member.linkname) == ("l", True, "/tmp/f")


# -- security.md checks 17 and 18 ---------------------------------------------------------------

def test_cp_paths_stay_inside_the_container(daemon, tmp_path):
    """Check 17: ../.. stops at the root, symlinks pointing out are followed inside."""
    run_detached(daemon, "--name", "s1", "busybox", "sleep", "60")
    sh(daemon, "s1", "echo container-passwd > /etc/passwd; ln -s / /escape; ln -s /tmp /test; "
                     "mkdir /hostdir-link-target; ln -s %s /cpath" % tmp_path)
    assert daemon.docker("cp", "s1:/escape/etc/passwd", "-").stdout.count(b"container-passwd") == 1
    daemon.docker("cp", "s1:../../../../../etc/passwd", str(tmp_path / "p"))
    assert (tmp_path / "p").read_text() == "container-passwd\n"
    marker = "cp-escape-%s" % uuid.uuid4().hex[:8]
    (tmp_path / marker).write_text("f")
    daemon.docker("cp", str(tmp_path / marker), "s1:/test")
    assert sh(daemon, "s1", "cat /tmp/%s" % marker) == "f"
    assert not os.path.exists("/tmp/" + marker)
    daemon.docker("cp", "s1:/cpath", str(tmp_path / "copied"))
    assert os.readlink(str(tmp_path / "copied")) == str(tmp_path)


def test_hostile_tars_stay_contained(daemon, tmp_path):
    """Check 18: symlink2 -> /../../../../.., symlink -> symlink2/<hostdir>, then writes
    through them; absolute and .. names."""
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    run_detached(daemon, "--name", "s2", "busybox", "sleep", "60")
    evil = make_tar(("symlink2", tarfile.SYMTYPE, "/../../../../.."),
                    ("symlink", tarfile.SYMTYPE, "symlink2" + str(hostdir)))
    daemon.docker("cp", "-", "s2:/", input=evil)
    (tmp_path / "inject").write_text("x")
    result = daemon.docker("cp", str(tmp_path / "inject"), "s2:/symlink/", check=False)
    assert result.returncode != 0 and "no such directory" in err(result)  # not in the container
    sh(daemon, "s2", "mkdir -p %s" % hostdir)
    daemon.docker("cp", str(tmp_path / "inject"), "s2:/symlink/")
    assert not (hostdir / "inject").exists()
    assert sh(daemon, "s2", "cat %s/inject" % hostdir) == "x"
    through = make_tar(("link", tarfile.SYMTYPE, "/"), ("link" + str(hostdir) + "/t", tarfile.REGTYPE, b"t"))
    assert put_tar(daemon, "s2", "/tmp", through).status == 200
    assert not (hostdir / "t").exists()
    response = put_tar(daemon, "s2", "/tmp", make_tar(("../../../..%s/u" % hostdir, tarfile.REGTYPE, b"u")))
    assert response.status == 400 and "breakout" in response.json()["message"]
    assert put_tar(daemon, "s2", "/tmp", make_tar(("%s/v" % hostdir, tarfile.REGTYPE, b"v"))).status == 200
    assert sh(daemon, "s2", "cat /tmp%s/v" % hostdir) == "v"
    assert os.listdir(str(hostdir)) == []


def test_compressed_upload_without_running_an_image_binary(daemon):
    """Check 19: an xz upload is decompressed in the daemon, never by the image's xz."""
    run_detached(daemon, "--name", "s3", "busybox", "sleep", "60")
    sh(daemon, "s3", "mkdir -p /usr/bin; printf '#!/bin/sh\\ntouch /marker\\n' > /usr/bin/xz; "
                     "chmod +x /usr/bin/xz")
    result = daemon.docker("cp", "-", "s3:/tmp", input=b"\xfd7zXZ\x00junk", check=False)
    assert result.returncode != 0
    assert daemon.docker("exec", "s3", "test", "-e", "/marker", check=False).returncode == 1
    import lzma
    daemon.docker("cp", "-", "s3:/tmp", input=lzma.compress(make_tar(("z", tarfile.REGTYPE, b"zz"))))
    assert sh(daemon, "s3", "cat /tmp/z") == "zz"


def test_cp_symlinks_of_a_stopped_container_stay_inside(daemon, tmp_path):
    """Check 17 on a stopped container: its mounted layer, not /proc/<pid>/root."""
    daemon.docker("create", "--name", "s4", "busybox", "true")
    upload = make_tar(("escape", tarfile.SYMTYPE, "/"), ("etc/passwd", tarfile.REGTYPE, b"stopped-passwd\n"))
    daemon.docker("cp", "-", "s4:/", input=upload)
    for path in ("/escape/etc/passwd", "/escape/../../etc/passwd", "../../etc/passwd"):
        with tarfile.open(fileobj=io.BytesIO(daemon.docker("cp", "s4:" + path, "-").stdout)) as tar:
            assert tar.extractfile("passwd").read() == b"stopped-passwd\n", path
    marker = "cp-stopped-%s" % uuid.uuid4().hex[:8]
    (tmp_path / marker).write_text("m")
    daemon.docker("cp", str(tmp_path / marker), "s4:/escape/tmp/")
    assert not os.path.exists("/tmp/" + marker)
    with tarfile.open(fileobj=io.BytesIO(daemon.docker("cp", "s4:/tmp/" + marker, "-").stdout)) as tar:
        assert tar.extractfile(marker).read() == b"m"


# -- the pure parts --------------------------------------------------------------------------

def test_parse_ps_output_keeps_the_container_rows_and_their_threads():
    output = ("USER PID TID CMD\n"
              "root 10 - sleep 1\n"
              "- - 10 -\n"
              "root 11 - other thing\n"
              "- - 11 -\n"
              "root 12 - sh -c x y\n")
    listed = top.parse_ps_output(output, {10, 12})
    assert listed == {"Titles": ["USER", "PID", "TID", "CMD"],
                      "Processes": [["root", "10", "-", "sleep 1"], ["-", "-", "10", "-"],
                                    ["root", "12", "-", "sh -c x y"]]}
    with pytest.raises(Exception, match="Couldn't find PID field"):
        top.parse_ps_output("USER CMD\n", {1})


def test_path_helpers():
    assert containerarchive.absolute_path("a/../../b/") == "/b/"
    assert containerarchive.absolute_path("/etc/.") == "/etc/."
    assert containerarchive.absolute_path("../..") == "/"
    assert containerarchive.mount_destination(["/data", "/data/vol", "/d"], "/data/vol/x") == "/data/vol"
    assert containerarchive.mount_destination(["/data"], "/database") is None
    assert containerarchive.go_file_mode(0o41777) == (1 << 31) | (1 << 20) | 0o777
    assert containerarchive.go_file_mode(0o20620) == (1 << 26) | (1 << 21) | 0o620
