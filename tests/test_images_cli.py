"""Images end to end: the real docker CLI against a real pydockerd (overlay, and vfs)."""
import hashlib
import http.server
import io
import json
import os
import subprocess
import tarfile
import threading
import time

import pytest

from conftest import DaemonProcess, UnixHTTPConnection, build_busybox_rootfs, new_daemon_dir


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory):
    """A busybox root filesystem as a tar, like `docker export` of a busybox container."""
    directory = tmp_path_factory.mktemp("images")
    rootfs = build_busybox_rootfs(str(directory / "rootfs"))
    path = str(directory / "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "--numeric-owner", "-cf", path, "."], check=True)
    return path


@pytest.fixture(scope="module", params=["overlay", "vfs"])
def daemon(request):
    process = DaemonProcess(new_daemon_dir(), ["-b", "none", "-s", request.param]).start()
    yield process
    process.cleanup()


def out(result):
    return result.stdout.decode().strip()


def image_id(daemon, name):
    return out(daemon.docker("image", "inspect", "-f", "{{.Id}}", name))


def test_driver_is_reported_like_dockerd(daemon):
    info = json.loads(out(daemon.docker("info", "--format", "{{json .}}")))
    assert info["Driver"] == daemon.flags[-1]
    if info["Driver"] == "overlay":
        assert ["Supports d_type", "true"] in info["DriverStatus"]


def test_import_then_images_and_inspect(daemon, rootfs_tar):
    imported = out(daemon.docker("import", rootfs_tar, "cli/imported:1"))
    assert imported.startswith("sha256:")
    listed = out(daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
    assert "cli/imported:1 %s" % imported[7:19] in listed.splitlines()
    inspect = json.loads(out(daemon.docker("image", "inspect", "cli/imported:1")))[0]
    assert inspect["Id"] == imported
    assert inspect["RepoTags"] == ["cli/imported:1"]
    assert inspect["RootFS"]["Type"] == "layers" and len(inspect["RootFS"]["Layers"]) == 1
    assert inspect["GraphDriver"]["Name"] == daemon.flags[-1]
    assert inspect["Os"] == "linux"


def test_image_id_is_the_sha256_of_its_config(daemon, rootfs_tar):
    daemon.docker("import", rootfs_tar, "cli/config:1")
    saved = daemon.docker("save", "cli/config:1").stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = tar.extractfile(manifest[0]["Config"]).read()
        layer = tar.extractfile(manifest[0]["Layers"][0]).read()
    assert image_id(daemon, "cli/config:1") == "sha256:" + hashlib.sha256(config).hexdigest()
    assert json.loads(config)["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]


def test_import_with_changes_and_message(daemon, rootfs_tar):
    daemon.docker("import", "-c", 'CMD ["/bin/echo", "hi"]', "-c", "ENV A=b", "-c", "WORKDIR /tmp",
                  "-c", "LABEL team=core", "-m", "made by a test", rootfs_tar, "cli/changes:1")
    config = json.loads(out(daemon.docker("image", "inspect", "-f", "{{json .Config}}",
                                          "cli/changes:1")))
    assert config["Cmd"] == ["/bin/echo", "hi"]
    assert "A=b" in config["Env"] and config["WorkingDir"] == "/tmp"
    assert config["Labels"] == {"team": "core"}
    assert out(daemon.docker("image", "inspect", "-f", "{{.Comment}}", "cli/changes:1")) == "made by a test"


def test_import_refuses_an_invalid_change(daemon, rootfs_tar):
    result = daemon.docker("import", "-c", "RUN rm -rf /", rootfs_tar, "cli/bad:1", check=False)
    assert result.returncode != 0
    assert b"run is not a valid change command" in result.stderr  # dockerd lowercases it


def test_import_from_stdin_streams_a_chunked_body(daemon, rootfs_tar):
    with open(rootfs_tar, "rb") as source:
        result = daemon.docker("import", "-", "cli/stdin:1", input=source.read())
    assert out(result).startswith("sha256:")


def test_import_from_an_http_url(daemon, rootfs_tar, tmp_path):
    directory = os.path.dirname(rootfs_tar)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/rootfs.tar" % server.server_address[1]
        assert out(daemon.docker("import", url, "cli/url:1")).startswith("sha256:")
    finally:
        server.shutdown()
        server.server_close()


def test_save_rmi_load_keeps_the_image_id(daemon, rootfs_tar, tmp_path):
    daemon.docker("import", rootfs_tar, "cli/roundtrip:1")
    before = image_id(daemon, "cli/roundtrip:1")
    saved = str(tmp_path / "saved.tar")
    daemon.docker("save", "-o", saved, "cli/roundtrip:1")
    daemon.docker("rmi", "cli/roundtrip:1")
    assert daemon.docker("image", "inspect", "cli/roundtrip:1", check=False).returncode != 0
    loaded = out(daemon.docker("load", "-i", saved))
    assert loaded == "Loaded image: cli/roundtrip:1"
    assert image_id(daemon, "cli/roundtrip:1") == before


def test_save_and_load_keep_a_parent_link(daemon, rootfs_tar, tmp_path):
    daemon.docker("import", rootfs_tar, "cli/base:1")
    container = out(daemon.docker("create", "cli/base:1", "true"))
    daemon.docker("commit", container, "cli/child:1")
    daemon.docker("rm", container)
    parent = image_id(daemon, "cli/base:1")
    saved = str(tmp_path / "family.tar")
    daemon.docker("save", "-o", saved, "cli/base:1", "cli/child:1")
    with tarfile.open(saved) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
    assert [item.get("Parent") for item in manifest].count(parent) == 1
    daemon.docker("rmi", "cli/child:1", "cli/base:1")
    daemon.docker("load", "-i", saved)
    assert out(daemon.docker("image", "inspect", "-f", "{{.Parent}}", "cli/child:1")) == parent
    daemon.docker("rmi", "cli/child:1", "cli/base:1")


def test_save_of_several_images_in_one_tar(daemon, rootfs_tar, tmp_path):
    daemon.docker("import", rootfs_tar, "cli/multi:a")
    daemon.docker("import", "-c", "CMD [\"sh\"]", rootfs_tar, "cli/multi:b")
    saved = daemon.docker("save", "cli/multi:a", "cli/multi:b").stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert sorted(tag for entry in manifest for tag in entry["RepoTags"]) == ["cli/multi:a", "cli/multi:b"]


def oci_layout(rootfs_tar):
    """An OCI image layout (oci-layout, index.json, blobs) made from the rootfs tar."""
    with open(rootfs_tar, "rb") as layer_file:
        layer = layer_file.read()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                                      "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": diff_id, "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(), "size": len(manifest),
         "annotations": {"io.containerd.image.name": "docker.io/cli/oci:1",
                         "org.opencontainers.image.ref.name": "1"}}]}).encode()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, blob in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
                           ("blobs/sha256/" + hashlib.sha256(config).hexdigest(), config),
                           ("blobs/sha256/" + hashlib.sha256(manifest).hexdigest(), manifest),
                           ("blobs/sha256/" + diff_id[7:], layer)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return data.getvalue(), "sha256:" + hashlib.sha256(config).hexdigest()


def test_load_an_oci_layout(daemon, rootfs_tar):
    data, config_id = oci_layout(rootfs_tar)
    result = daemon.docker("load", input=data)
    assert config_id in out(daemon.docker("images", "-a", "--no-trunc", "-q"))
    assert b"Loaded image" in result.stdout


def unique_layer_tar():
    """A one-file layer no other test shares, so load must read (and verify) it."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = ("unique %f\n" % time.time()).encode() * 100
        info = tarfile.TarInfo("unique.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return data.getvalue()


def test_load_with_a_tampered_layer_fails_and_registers_nothing(daemon):
    daemon.docker("import", "-", "cli/tamper:1", input=unique_layer_tar())
    saved = daemon.docker("save", "cli/tamper:1").stdout
    daemon.docker("rmi", "cli/tamper:1")
    images_before = out(daemon.docker("images", "-a", "-q"))
    tampered = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(saved)) as source, \
            tarfile.open(fileobj=tampered, mode="w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None
            if member.name.endswith("layer.tar"):
                data = data[:600] + b"X" + data[601:]  # one byte of unique.txt's content
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    result = daemon.docker("load", input=tampered.getvalue(), check=False)
    assert result.returncode != 0
    assert b"invalid diffID" in result.stdout + result.stderr
    assert out(daemon.docker("images", "-a", "-q")) == images_before


def test_load_refuses_a_manifest_path_with_dotdot(daemon):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        blob = json.dumps([{"Config": "../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    result = daemon.docker("load", input=data.getvalue(), check=False)
    assert result.returncode != 0
    assert daemon.request("GET", "/_ping").status == 200


def test_truncated_upload_leaves_no_image(daemon, rootfs_tar):
    with open(rootfs_tar, "rb") as source:
        head = source.read(300000)
    before = out(daemon.docker("images", "-a", "-q"))
    result = daemon.docker("import", "-", "cli/truncated:1", input=head, check=False)
    assert result.returncode != 0
    assert out(daemon.docker("images", "-a", "-q")) == before


def test_non_tar_upload_is_a_clear_error(daemon):
    result = daemon.docker("import", "-", "cli/junk:1", input=b"\x28\xb5\x2f\xfd" + b"junk" * 100,
                           check=False)
    assert result.returncode != 0
    assert b"unsupported compression format" in result.stderr


def test_tag_and_rmi_semantics(daemon, rootfs_tar):
    daemon.docker("import", rootfs_tar, "cli/tagged:1")
    daemon.docker("tag", "cli/tagged:1", "cli/other:2")
    untag = out(daemon.docker("rmi", "cli/other:2"))
    assert untag == "Untagged: cli/other:2"
    assert image_id(daemon, "cli/tagged:1").startswith("sha256:")
    daemon.docker("tag", "cli/tagged:1", "cli/other:3")
    by_id = daemon.docker("rmi", image_id(daemon, "cli/tagged:1")[7:19], check=False)
    assert by_id.returncode != 0
    assert b"must be forced) - image is referenced in multiple repositories" in by_id.stderr
    forced = out(daemon.docker("rmi", "-f", image_id(daemon, "cli/tagged:1")))
    assert "Untagged: cli/tagged:1" in forced and "Deleted: sha256:" in forced


def test_rmi_of_a_missing_image_is_404(daemon):
    response = daemon.request("DELETE", "/v1.41/images/nonexistent:tag")
    assert response.status == 404
    assert response.json() == {"message": "No such image: nonexistent:tag"}


def test_tag_of_a_missing_image_is_404(daemon):
    result = daemon.docker("tag", "no/such:image", "x:1", check=False)
    assert result.returncode != 0 and b"No such image" in result.stderr


def test_history(daemon, rootfs_tar):
    daemon.docker("import", "-m", "first import", rootfs_tar, "cli/history:1")
    lines = out(daemon.docker("history", "--format", "{{.ID}}|{{.Comment}}", "cli/history:1")).splitlines()
    assert lines == ["%s|first import" % image_id(daemon, "cli/history:1")[7:19]]


def test_images_filters(daemon, rootfs_tar):
    daemon.docker("import", "-c", "LABEL filt=yes", rootfs_tar, "cli/filter:1")
    by_label = out(daemon.docker("images", "--filter", "label=filt=yes", "--format", "{{.Repository}}"))
    assert by_label.splitlines() == ["cli/filter"]
    by_ref = out(daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}", "cli/filter"))
    assert by_ref.splitlines() == ["cli/filter:1"]


def test_image_prune_removes_dangling_images(daemon, rootfs_tar):
    daemon.docker("import", "-c", "LABEL dangle=1", rootfs_tar, "cli/dangle:1")
    dangling = image_id(daemon, "cli/dangle:1")
    daemon.docker("import", "-c", "LABEL dangle=2", rootfs_tar, "cli/dangle:1")  # moves the tag
    assert dangling in out(daemon.docker("images", "-q", "--no-trunc", "--filter", "dangling=true"))
    pruned = out(daemon.docker("image", "prune", "-f"))
    assert "deleted: " + dangling in pruned
    assert dangling not in out(daemon.docker("images", "-a", "-q", "--no-trunc"))


def test_hostile_tar_cannot_write_outside_the_layer(daemon, tmp_path):
    marker = "pyd-escape-%d" % os.getpid()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        def add(name, payload=b"x"):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        add("ok.txt")
        add("../../../../../../tmp/%s-1" % marker)
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        tar.addfile(link)
        add("link/%s-2" % marker)
    daemon.docker("import", "-", "cli/evil:1", input=data.getvalue(), check=False)
    assert not os.path.exists("/tmp/%s-1" % marker)
    assert not os.path.exists("/tmp/%s-2" % marker)
    assert daemon.request("GET", "/_ping").status == 200


def test_info_and_df_count_images(daemon, rootfs_tar):
    daemon.docker("import", rootfs_tar, "cli/count:1")
    info = daemon.request("GET", "/v1.41/info").json()
    listed = daemon.request("GET", "/v1.41/images/json").json()
    assert info["Images"] == len(listed) > 0
    usage = daemon.request("GET", "/v1.41/system/df").json()
    assert usage["LayersSize"] > 0
    assert {image["Id"] for image in usage["Images"]} >= {image["Id"] for image in listed}


def test_events_since_while_another_request_happens(daemon, rootfs_tar):
    since = str(int(time.time()) - 1)
    connection = UnixHTTPConnection(daemon.socket, timeout=20)
    connection.request("GET", "/v1.41/events?filters=%7B%22type%22%3A%5B%22image%22%5D%7D")
    response = connection.getresponse()
    daemon.docker("import", rootfs_tar, "cli/events:1")
    daemon.docker("tag", "cli/events:1", "cli/events:2")
    line = response.fp.readline()  # chunk size
    event = json.loads(response.fp.readline())
    connection.close()
    assert event["Type"] == "image" and event["Action"] in ("import", "tag")
    replay = daemon.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                           "--filter", "type=image", "--filter", "event=tag",
                           "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    assert "tag cli/events:2" in out(replay).splitlines()
    assert line
