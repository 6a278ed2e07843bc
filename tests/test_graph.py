"""Tests for drivers/graph.py: the image store, against the real vfs and overlay drivers.

Every archive is built here in Python -- layer tars with whiteouts, a docker-archive as
`docker save` writes it, an OCI image layout, the legacy v1 format, hostile variants of each --
and loaded into a graph under pytest's tmp_path. Containers are simulated by the two callbacks
the daemon gives the graph (image_in_use, image_running). Whatever a test mounts is unmounted
by the fixtures, even when the test fails.
"""
import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from drivers import graphdriver, image, linux, tarexport
from drivers import layer as layermod
from drivers.errdefs import Conflict, InvalidParameter, NotFound, System
from drivers.graph import Graph, glob_match
from drivers.image import Timestamp, container_config_shape
from drivers.reference import parse_normalized_named
from drivers.tags import TagStore

DRIVERS = ["vfs", "overlay"]
BUSYBOX = "/bin/busybox"
MTIME = 1600000000


# ---------------------------------------------------------------------------------------------
# Archive builders
# ---------------------------------------------------------------------------------------------

def tar_bytes(members, compress=None):
    """A tar from (name, content) pairs: bytes/str content is a file, None a directory,
    ("symlink", target) a symlink, ("hardlink", target) a hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "symlink" else tarfile.LNKTYPE
                info.linkname, info.mode = content[1], 0o777
                tar.addfile(info)
            else:
                data = content.encode() if isinstance(content, str) else content
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    return gzip.compress(data) if compress == "gzip" else data


def diff_id(layer):
    return "sha256:" + hashlib.sha256(layer).hexdigest()


def image_config(layers, history=None, labels=None, created="2020-01-02T03:04:05.123456789Z", **extra):
    """Image config bytes for uncompressed layer tars `layers`."""
    config = {"architecture": "amd64", "os": "linux", "created": created,
              "config": {"Cmd": ["sh"], "Labels": labels},
              "rootfs": {"type": "layers", "diff_ids": [diff_id(layer) for layer in layers]},
              "history": history if history is not None else
              [{"created": created, "created_by": "layer %d" % n} for n in range(len(layers))]}
    config.update(extra)
    return json.dumps(config, sort_keys=True).encode()


def docker_archive(images, extra_members=()):
    """A docker-archive: images is [(config bytes, [layer tars], [repo tags])]."""
    members, manifest, written = [], [], set()
    for config, layers, tags in images:
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        members.append((config_name, config))
        layer_names = []
        for layer in layers:
            name = hashlib.sha256(layer).hexdigest() + "/layer.tar"
            if name not in written:
                members.append((name, layer))
                written.add(name)
            layer_names.append(name)
        manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_names})
    members.extend(extra_members)
    members.append(("manifest.json", json.dumps(manifest).encode()))
    return tar_bytes(members)


def blob(members, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    members.append(("blobs/sha256/" + digest[7:], data))
    return {"digest": digest, "size": len(data)}


def oci_layout(config, layers, annotations, media_type="application/vnd.oci.image.layer.v1.tar+gzip"):
    """An OCI image layout with one image; `layers` are the blobs as stored (e.g. gzipped)."""
    members = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    config_descriptor = dict(blob(members, config), mediaType="application/vnd.oci.image.config.v1+json")
    layer_descriptors = [dict(blob(members, layer), mediaType=media_type) for layer in layers]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config_descriptor, "layers": layer_descriptors}).encode()
    manifest_descriptor = dict(blob(members, manifest), mediaType="application/vnd.oci.image.manifest.v1+json",
                               annotations=annotations)
    members.append(("index.json", json.dumps({"schemaVersion": 2, "manifests": [manifest_descriptor]}).encode()))
    return tar_bytes(members)


def legacy_archive(layers, repositories_tag):
    """The pre-1.10 format: <v1 id>/json and <v1 id>/layer.tar per layer, tags in `repositories`."""
    members, parent = [], None
    for index, layer in enumerate(layers):
        v1_id = hashlib.sha256(b"v1-%d" % index).hexdigest()
        v1 = {"id": v1_id, "created": "2015-01-0%dT00:00:00Z" % (index + 1), "os": "linux",
              "container_config": {"Cmd": ["/bin/sh", "-c", "step %d" % index]},
              "config": {"Cmd": ["sh"]}}
        if parent:
            v1["parent"] = parent
        members += [(v1_id + "/VERSION", b"1.0"), (v1_id + "/json", json.dumps(v1).encode()),
                    (v1_id + "/layer.tar", layer)]
        parent = v1_id
    repository, tag = repositories_tag
    members.append(("repositories", json.dumps({repository: {tag: parent}}).encode()))
    return tar_bytes(members)


BASE = tar_bytes([("etc", None), ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                  ("etc/motd", "hello\n"), ("bin", None), ("bin/tool", b"\x7fELF tool")])
SECOND = tar_bytes([("etc", None), ("etc/.wh.motd", ""), ("etc/added", "added\n")])
THIRD = tar_bytes([("opt", None), ("opt/third", "3\n")])


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

def unmount_everything_under(path):
    top = os.path.realpath(str(path))
    with open("/proc/self/mountinfo") as mountinfo:
        points = [linux.unescape_mount_path(line.split()[4]) for line in mountinfo]
    for point in reversed([p for p in points if p == top or p.startswith(top + "/")]):
        linux.umount(point, linux.MNT_DETACH)


class Env(object):
    """A graph on a private root, with the events it emitted and simulated containers."""

    def __init__(self, root, driver):
        self.root = root
        self.driver = driver
        self.events = []
        self.containers = {}   # container id -> (image id, running)
        self.graph = self.open_graph()

    def open_graph(self):
        tagstore = TagStore(os.path.join(self.root, "repositories-" + self.driver.name))
        return Graph(self.root, self.driver, tagstore, events=self._event,
                     image_in_use=self._in_use, image_running=self._running,
                     docker_version="20.10.24-test")

    def _event(self, kind, action, actor, attributes):
        self.events.append((kind, action, actor, attributes))

    def _in_use(self, image_id):
        return next((cid for cid, (img, _) in self.containers.items() if img == image_id), None)

    def _running(self, image_id):
        return next((cid for cid, (img, run) in self.containers.items() if img == image_id and run), None)

    def actions(self):
        return [event[1] for event in self.events]

    def layerdb(self):
        return sorted(os.listdir(os.path.join(self.root, "graph", "layerdb", "sha256")))

    def driver_layers(self):
        """The layer IDs the driver has on disk (vfs keeps them in dir/, overlay beside l/)."""
        home = self.driver.home
        if self.driver.name == "vfs":
            home = os.path.join(home, "dir")
        return sorted(name for name in os.listdir(home) if name != "l")

    def tree(self, image):
        """{path: bytes or 'DIR' or '-> target'} of an image's root filesystem."""
        cache_id = self.graph.layers.get(image.top_chain_id).cache_id
        with self.driver.mounted(cache_id) as top:
            found = {}
            for base, dirs, files in os.walk(top):
                for name in dirs + files:
                    path = os.path.join(base, name)
                    rel = os.path.relpath(path, top)
                    if os.path.islink(path):
                        found[rel] = "-> " + os.readlink(path)
                    elif os.path.isdir(path):
                        found[rel] = "DIR"
                    else:
                        with open(path, "rb") as content:
                            found[rel] = content.read()
            return found


@pytest.fixture(params=DRIVERS)
def env(request, tmp_path):
    root = str(tmp_path / "root")
    os.makedirs(root)
    driver = graphdriver.new(root, request.param)
    try:
        yield Env(root, driver)
    finally:
        driver.cleanup()
        unmount_everything_under(tmp_path)


def ref(text):
    return parse_normalized_named(text)


def import_tar(env, layer, name=None, **kwargs):
    return env.graph.import_image(io.BytesIO(layer), ref(name) if name else None, **kwargs)


def load(env, data, **kwargs):
    return env.graph.load(io.BytesIO(data), **kwargs)


def save(env, *names):
    out = io.BytesIO()
    env.graph.save(list(names), out)
    return out.getvalue()


def members_of(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(member.name, member) for member in tar.getmembers()]


def read_member(data, name):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.extractfile(name).read()


def layered_image(env, tags=("layered:1",)):
    """A three-layer image (the middle one deletes /etc/motd), loaded from a docker-archive."""
    layers = [BASE, SECOND, THIRD]
    load(env, docker_archive([(image_config(layers), layers, list(tags))]))
    return env.graph.lookup(tags[0]) if tags else None


# ---------------------------------------------------------------------------------------------
# Import, lookup, inspect
# ---------------------------------------------------------------------------------------------

def test_import_image_id_is_sha256_of_its_config(env):
    image_id = import_tar(env, BASE)
    image = env.graph.lookup(image_id)
    assert image_id == "sha256:" + hashlib.sha256(image.raw).hexdigest()
    assert image.diff_ids == [diff_id(BASE)]


def test_import_config_has_dockerds_fields(env):
    image = env.graph.lookup(import_tar(env, BASE))
    config = json.loads(image.raw)
    assert list(config) == sorted(config)
    assert config["comment"] == "Imported from -"
    assert config["history"] == [{"created": config["created"], "comment": "Imported from -"}]
    assert config["os"] == "linux" and config["docker_version"] == "20.10.24-test"
    assert list(config["config"]) == list(container_config_shape({}))


def test_import_message_becomes_the_comment(env):
    image = env.graph.lookup(import_tar(env, BASE, message="my import"))
    assert image.config["comment"] == "my import"


def test_import_tags_the_image_and_emits_tag_then_import(env):
    image_id = import_tar(env, BASE, "t1")
    assert env.graph.lookup("t1").id == image_id
    assert env.graph.lookup("docker.io/library/t1:latest").id == image_id
    assert env.actions() == ["tag", "import"]
    assert env.events[0][3]["name"] == "t1:latest"


def test_import_unpacks_the_tree(env):
    image = env.graph.lookup(import_tar(env, BASE))
    tree = env.tree(image)
    assert tree["etc/passwd"] == b"root:x:0:0:root:/root:/bin/sh\n"
    assert tree["bin/tool"] == b"\x7fELF tool"


def test_import_accepts_gzip(env):
    image = env.graph.lookup(import_tar(env, gzip.compress(BASE)))
    assert image.diff_ids == [diff_id(BASE)]


def test_import_config_is_the_callers(env):
    config = {"Cmd": ["/bin/sh", "-c", "echo hi"], "Env": ["A=1"], "WorkingDir": "/srv"}
    image = env.graph.lookup(import_tar(env, BASE, config=config))
    assert list(image.container_config) == list(container_config_shape({"Cmd": []}))
    assert image.container_config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert (image.container_config["Env"], image.container_config["WorkingDir"]) == (["A=1"], "/srv")


def test_import_of_a_non_tar_leaves_no_layer(env):
    with pytest.raises(InvalidParameter):
        import_tar(env, b"this is not a tar archive at all" * 100)
    assert env.layerdb() == [] and env.driver_layers() == []


def test_import_of_a_hostile_tar_is_refused_and_leaves_no_layer(env, tmp_path):
    hostile = tar_bytes([("../../escaped", "pwned")])
    with pytest.raises(InvalidParameter):
        import_tar(env, hostile)
    assert env.layerdb() == [] and env.driver_layers() == []
    assert not os.path.exists(os.path.join(env.root, "..", "escaped"))


def test_import_twice_reuses_the_layer(env):
    import_tar(env, BASE, "a")
    import_tar(env, BASE, "b")
    assert len(env.layerdb()) == 1 and len(env.driver_layers()) == 1


def test_lookup_by_short_and_prefixed_id(env):
    image_id = import_tar(env, BASE)
    hex_id = image_id[7:]
    assert env.graph.lookup(hex_id[:12]).id == image_id
    assert env.graph.lookup("sha256:" + hex_id[:10]).id == image_id
    assert env.graph.lookup(hex_id).id == image_id
    assert env.graph.lookup(image_id).id == image_id


def test_lookup_of_an_unknown_name_says_no_such_image(env):
    with pytest.raises(NotFound, match="^No such image: nosuch:latest$"):
        env.graph.lookup("nosuch")
    with pytest.raises(NotFound, match="^No such image: nonexistent:tag$"):
        env.graph.lookup("nonexistent:tag")


def test_lookup_of_an_invalid_name_is_a_bad_parameter(env):
    with pytest.raises(InvalidParameter):
        env.graph.lookup("UPPER:case")


def test_lookup_by_digest_reference(env):
    image_id = import_tar(env, BASE)
    digest = "sha256:" + "ab" * 32
    env.graph.tagstore.add_digest(ref("example.com/app@" + digest), image_id)
    assert env.graph.lookup("example.com/app@" + digest).id == image_id


def test_inspect_has_dockerds_shape(env):
    image_id = import_tar(env, BASE, "busybox")
    result = env.graph.inspect("busybox")
    assert list(result) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container",
                            "ContainerConfig", "DockerVersion", "Author", "Config", "Architecture", "Os",
                            "Size", "VirtualSize", "GraphDriver", "RootFS", "Metadata"]
    assert result["Id"] == image_id and result["RepoTags"] == ["busybox:latest"]
    assert result["RepoDigests"] == [] and result["Comment"] == "Imported from -"
    assert result["RootFS"] == {"Type": "layers", "Layers": [diff_id(BASE)]}
    assert result["GraphDriver"]["Name"] == env.driver.name
    assert result["Size"] == len(b"root:x:0:0:root:/root:/bin/sh\n") + len(b"hello\n") + len(b"\x7fELF tool")
    assert result["Metadata"]["LastTagTime"].endswith("Z")
    assert list(result["ContainerConfig"]) == list(container_config_shape({}))


def test_inspect_of_an_untagged_image_has_zero_last_tag_time(env):
    image_id = import_tar(env, BASE)
    assert env.graph.inspect(image_id)["Metadata"]["LastTagTime"] == "0001-01-01T00:00:00Z"


def test_inspect_of_an_unknown_image_wraps_the_message_like_dockerd(env):
    with pytest.raises(NotFound, match="^no such image: nosuchthing: No such image: nosuchthing:latest$"):
        env.graph.inspect("nosuchthing")


# ---------------------------------------------------------------------------------------------
# Save and load
# ---------------------------------------------------------------------------------------------

def test_save_writes_dockerds_layout(env):
    image = layered_image(env, tags=("layered:1",))
    data = save(env, "layered:1")
    names = [name for name, _ in members_of(data)]
    assert names == sorted(names)
    assert image.id[7:] + ".json" in names and names[-2:] == ["manifest.json", "repositories"]
    manifest = json.loads(read_member(data, "manifest.json"))
    assert manifest[0]["Config"] == image.id[7:] + ".json"
    assert manifest[0]["RepoTags"] == ["layered:1"] and len(manifest[0]["Layers"]) == 3
    top = manifest[0]["Layers"][-1].split("/")[0]
    assert json.loads(read_member(data, "repositories")) == {"layered": {"1": top}}
    assert read_member(data, top + "/VERSION") == b"1.0"
    assert read_member(data, image.id[7:] + ".json") == image.raw


def test_saved_layer_tars_are_the_original_bytes(env):
    layered_image(env)
    data = save(env, "layered:1")
    manifest = json.loads(read_member(data, "manifest.json"))
    assert [read_member(data, path) for path in manifest[0]["Layers"]] == [BASE, SECOND, THIRD]


def test_saved_lower_layer_json_has_an_epoch_date_and_the_top_one_the_image_config(env):
    image = layered_image(env)
    data = save(env, "layered:1")
    layers = json.loads(read_member(data, "manifest.json"))[0]["Layers"]
    lower = json.loads(read_member(data, layers[0].replace("layer.tar", "json")))
    top = json.loads(read_member(data, layers[-1].replace("layer.tar", "json")))
    assert lower["created"] == "1970-01-01T00:00:00Z" and "parent" not in lower
    assert top["parent"] == layers[-2].split("/")[0] and top["config"]["Cmd"] == ["sh"]
    assert top["created"] == image.created.rfc3339nano()


def test_save_delete_load_gives_the_same_image_and_tree(env):
    image = layered_image(env)
    tree = env.tree(image)
    data = save(env, "layered:1")
    env.graph.delete("layered:1")
    assert env.layerdb() == [] and env.driver_layers() == []
    messages = load(env, data)
    assert messages == [{"stream": "Loaded image: layered:1\n"}]
    reloaded = env.graph.lookup("layered:1")
    assert reloaded.id == image.id and env.tree(reloaded) == tree


def test_save_delete_load_of_a_busybox_rootfs(env):
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    with open(BUSYBOX, "rb") as busybox:
        binary = busybox.read()
    rootfs = tar_bytes([("bin", None), ("bin/busybox", binary), ("bin/sh", ("symlink", "busybox")),
                        ("bin/ls", ("hardlink", "bin/busybox")), ("etc", None), ("etc/passwd", "root:x:0:0::/:/bin/sh\n")])
    image_id = import_tar(env, rootfs, "busybox")
    data = save(env, "busybox")
    env.graph.delete("busybox")
    load(env, data)
    image = env.graph.lookup("busybox")
    assert image.id == image_id
    tree = env.tree(image)
    assert tree["bin/busybox"] == binary and tree["bin/sh"] == "-> busybox"


def test_save_of_two_images_sharing_a_layer_stores_it_once_and_loads_back(env):
    base_id = import_tar(env, BASE, "base")
    child = layered_image(env, tags=("child:1",))
    data = save(env, "base", "child:1")
    members = dict(members_of(data))
    layer_tars = [name for name in members if name.endswith("/layer.tar")]
    assert len(layer_tars) == 4 and sum(members[name].issym() for name in layer_tars) == 1
    env.graph.delete("base")
    env.graph.delete("child:1")
    load(env, data)
    assert env.graph.lookup("base").id == base_id and env.graph.lookup("child:1").id == child.id


def test_save_of_a_bare_repository_name_saves_every_tag(env):
    import_tar(env, BASE, "multi:a")
    import_tar(env, SECOND, "multi:b")
    manifest = json.loads(read_member(save(env, "multi"), "manifest.json"))
    assert sorted(tag for item in manifest for tag in item["RepoTags"]) == ["multi:a", "multi:b"]


def test_save_by_id_has_no_tags_and_load_reports_the_id(env):
    image_id = import_tar(env, BASE, "only")
    data = save(env, image_id[7:19])
    assert json.loads(read_member(data, "manifest.json"))[0]["RepoTags"] is None
    assert "repositories" not in dict(members_of(data))
    env.graph.delete("only")
    assert load(env, data) == [{"stream": "Loaded image ID: %s\n" % image_id}]


def test_save_of_an_unknown_tag_says_reference_does_not_exist(env):
    with pytest.raises(NotFound, match="reference does not exist"):
        save(env, "nosuch:tag")


def test_save_emits_save_events(env):
    image_id = import_tar(env, BASE, "s")
    save(env, "s")
    assert ("image", "save", image_id) in [event[:3] for event in env.events]


def test_load_docker_archive_applies_whiteouts(env):
    image = layered_image(env)
    tree = env.tree(image)
    assert "etc/motd" not in tree and tree["etc/added"] == b"added\n" and tree["opt/third"] == b"3\n"


def test_load_emits_load_events_and_tags(env):
    image = layered_image(env)
    assert ("image", "load", image.id) in [event[:3] for event in env.events]
    assert env.graph.tagstore.get(ref("layered:1")) == image.id


def test_load_reports_progress_per_new_layer_like_dockerd(env):
    reports = []
    load(env, docker_archive([(image_config([BASE]), [BASE], ["p:1"])]), progress=reports.append)
    assert reports[-1] == {
        "status": "Loading layer", "progressDetail": {"current": len(BASE), "total": len(BASE)},
        "progress": "[==================================================>]  %s/%s" % (
            tarexport.human_size(len(BASE)), tarexport.human_size(len(BASE))),
        "id": diff_id(BASE)[7:19]}


def test_load_quiet_reports_no_progress(env):
    reports = []
    load(env, docker_archive([(image_config([BASE]), [BASE], ["p:1"])]), progress=reports.append, quiet=True)
    assert reports == []


def test_load_moving_a_tag_says_so(env):
    old_id = import_tar(env, THIRD, "moved")
    messages = load(env, docker_archive([(image_config([BASE]), [BASE], ["moved:latest"])]))
    assert messages[0] == {"stream": "The image moved:latest already exists, renaming the old one with "
                                     "ID %s to empty string\n" % old_id}


def test_load_of_a_gzipped_archive(env):
    load(env, gzip.compress(docker_archive([(image_config([BASE]), [BASE], ["gz:1"])])))
    assert env.graph.lookup("gz:1").diff_ids == [diff_id(BASE)]


def test_load_oci_layout_with_gzip_layers(env):
    config = image_config([BASE, SECOND])
    data = oci_layout(config, [gzip.compress(BASE), gzip.compress(SECOND)],
                      {"io.containerd.image.name": "docker.io/library/ocitest:v1",
                       "org.opencontainers.image.ref.name": "v1"})
    assert load(env, data) == [{"stream": "Loaded image: ocitest:v1\n"}]
    image = env.graph.lookup("ocitest:v1")
    assert image.raw == config and "etc/motd" not in env.tree(image)


def test_load_oci_layout_with_only_a_bare_tag_loads_untagged(env):
    config = image_config([BASE])
    messages = load(env, oci_layout(config, [BASE], {"org.opencontainers.image.ref.name": "latest"},
                                    media_type="application/vnd.oci.image.layer.v1.tar"))
    assert messages == [{"stream": "Loaded image ID: sha256:%s\n" % hashlib.sha256(config).hexdigest()}]


def test_load_oci_layout_refuses_a_config_blob_that_does_not_match_its_digest(env):
    data = oci_layout(image_config([BASE]), [BASE], {})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    index = json.loads(dict(members)["index.json"])
    manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"][7:]
    config_digest = json.loads(dict(members)[manifest_name])["config"]["digest"]
    tampered = [(name, b'{"rootfs": {"type": "layers", "diff_ids": []}}'
                 if name.endswith(config_digest[7:]) else content) for name, content in members]
    with pytest.raises(InvalidParameter, match="does not match digest"):
        load(env, tar_bytes(tampered))


def test_load_legacy_format(env):
    assert load(env, legacy_archive([BASE, SECOND], ("legacy", "old"))) == [
        {"stream": "Loaded image: legacy:old\n"}]
    image = env.graph.lookup("legacy:old")
    assert image.diff_ids == [diff_id(BASE), diff_id(SECOND)]
    assert [item["created_by"] for item in image.history] == ["/bin/sh -c step 0", "/bin/sh -c step 1"]
    assert env.graph.store.get(image.parent).diff_ids == [diff_id(BASE)]
    assert "etc/motd" not in env.tree(image)


def test_load_tampered_layer_fails_with_invalid_diffid_and_leaves_no_orphan(env):
    import_tar(env, THIRD, "keep")
    before = (env.layerdb(), env.driver_layers())
    config = image_config([BASE, SECOND])
    tampered = tar_bytes([("etc", None), ("etc/added", "evil\n")])
    with pytest.raises(InvalidParameter) as raised:
        load(env, docker_archive([(config, [BASE, tampered], ["bad:1"])]))
    assert str(raised.value) == 'invalid diffID for layer 1: expected "%s", got "%s"' % (
        diff_id(SECOND), diff_id(tampered))
    assert (env.layerdb(), env.driver_layers()) == before
    with pytest.raises(NotFound):
        env.graph.lookup("bad:1")


def test_load_refuses_a_manifest_path_that_climbs_out(env, tmp_path):
    outside = tmp_path / "x"
    outside.write_bytes(BASE)
    config = image_config([BASE])
    members = [("c.json", config), ("manifest.json", json.dumps(
        [{"Config": "c.json", "RepoTags": ["up:1"], "Layers": ["../x"]}]).encode())]
    with pytest.raises(InvalidParameter, match="outside the archive"):
        load(env, tar_bytes(members))
    assert env.layerdb() == [] and env.driver_layers() == []


def test_load_refuses_an_absolute_config_path(env):
    members = [("manifest.json", json.dumps([{"Config": "/etc/passwd", "Layers": []}]).encode())]
    with pytest.raises(InvalidParameter, match="outside the archive"):
        load(env, tar_bytes(members))


def test_load_does_not_follow_a_symlink_out_of_the_archive(env):
    members = [("c.json", ("symlink", "/etc/hostname")), ("manifest.json", json.dumps(
        [{"Config": "c.json", "RepoTags": ["link:1"], "Layers": []}]).encode())]
    with pytest.raises(InvalidParameter, match="not found"):
        load(env, tar_bytes(members))


def test_load_of_a_truncated_upload_leaves_nothing(env):
    data = docker_archive([(image_config([BASE, SECOND]), [BASE, SECOND], ["trunc:1"])])
    with pytest.raises(InvalidParameter, match="Error processing tar file"):
        load(env, data[:len(data) // 2 + 100])
    assert env.graph.images() == [] and env.layerdb() == [] and env.driver_layers() == []


def test_load_of_a_non_tar_fails_clearly(env):
    with pytest.raises(InvalidParameter, match="Error processing tar file"):
        load(env, b"GARBAGE!" * 200)


def test_load_of_an_archive_without_manifest_says_what_is_missing(env):
    with pytest.raises(InvalidParameter, match="no manifest.json, index.json or repositories"):
        load(env, tar_bytes([("hello", "world")]))


def test_load_refuses_a_layer_count_mismatch(env):
    config = image_config([BASE, SECOND])
    with pytest.raises(InvalidParameter, match="layers length mismatch: expected 1, got 2"):
        load(env, docker_archive([(config, [BASE], ["short:1"])]))
    assert env.layerdb() == [] and env.driver_layers() == []


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------

def test_register_layer_with_the_wrong_diff_id_leaves_nothing(env):
    with pytest.raises(layermod.InvalidDiffID):
        env.graph.register_layer(None, io.BytesIO(BASE), expected_diff_id=diff_id(SECOND))
    assert env.layerdb() == [] and env.driver_layers() == []


def test_register_layer_computes_the_chain_id(env):
    base = env.graph.register_layer(None, io.BytesIO(BASE))
    second = env.graph.register_layer(base, io.BytesIO(SECOND))
    assert base == diff_id(BASE)
    expected = "sha256:" + hashlib.sha256(("%s %s" % (diff_id(BASE), diff_id(SECOND))).encode()).hexdigest()
    assert second == expected and env.graph.has_layer(second)


def test_a_released_layer_no_image_uses_is_removed(env):
    chain = env.graph.register_layer(None, io.BytesIO(BASE))
    assert env.graph.release_layer(chain) == [chain]
    assert env.layerdb() == [] and env.driver_layers() == []


def test_create_image_needs_its_layers(env):
    with pytest.raises(InvalidParameter, match="layer does not exist"):
        env.graph.create_image(image_config([BASE]))


def test_create_image_is_idempotent(env):
    chain = env.graph.register_layer(None, io.BytesIO(BASE))
    config = image_config([BASE])
    assert env.graph.create_image(config) == env.graph.create_image(config)
    env.graph.release_layer(chain)
    assert env.layerdb() == [diff_id(BASE)[7:]]


def test_layer_tar_gives_back_the_registered_bytes(env):
    chain = env.graph.register_layer(None, io.BytesIO(gzip.compress(BASE)))
    out = io.BytesIO()
    env.graph.layer_tar(chain, out)
    assert out.getvalue() == BASE


def test_images_sharing_a_base_layer_keep_it_until_the_last_goes(env):
    first = import_tar(env, BASE, "first")
    layered_image(env)
    env.graph.delete("layered:1")
    assert env.graph.has_layer(diff_id(BASE))
    env.graph.lookup(first)
    records = env.graph.delete("first")
    assert {"Deleted": diff_id(BASE)} in records
    assert env.layerdb() == [] and env.driver_layers() == []


def test_a_restarted_graph_finds_images_tags_and_layers(env):
    image = layered_image(env)
    env.driver.cleanup()
    restarted = env.open_graph()
    assert restarted.lookup("layered:1").id == image.id
    assert restarted.lookup("layered:1").size == image.size
    restarted.delete("layered:1")
    assert env.layerdb() == [] and env.driver_layers() == []


def test_a_restart_removes_layers_no_image_references(env):
    env.graph.register_layer(None, io.BytesIO(BASE))   # a crash before its image was created
    env.open_graph()
    assert env.layerdb() == [] and env.driver_layers() == []


def test_a_container_layer_keeps_a_force_deleted_image_layer(env):
    image_id = import_tar(env, BASE, "used")
    env.graph.create_rw_layer("c1", image_id, init_func=lambda path: open(os.path.join(path, "init"), "w").close())
    root = env.graph.mount_rw_layer("c1")
    try:
        with open(os.path.join(root, "etc", "new"), "w") as new:
            new.write("x")
        assert os.path.exists(os.path.join(root, "init"))
    finally:
        env.graph.unmount_rw_layer("c1")
    assert [change.path for change in env.graph.rw_layer_changes("c1")] == ["/etc", "/etc/new"]
    assert env.graph.rw_layer_size("c1") == 1
    records = env.graph.delete(image_id, force=True)
    assert records == [{"Untagged": "used:latest"}, {"Deleted": image_id}]
    assert env.graph.has_layer(diff_id(BASE))
    assert env.graph.release_rw_layer("c1") == [diff_id(BASE)]
    assert env.layerdb() == [] and env.driver_layers() == []


def test_commit_rw_layer_registers_the_containers_changes(env):
    image_id = import_tar(env, BASE)
    env.graph.create_rw_layer("c1", image_id)
    root = env.graph.mount_rw_layer("c1")
    try:
        os.unlink(os.path.join(root, "etc", "motd"))
        with open(os.path.join(root, "committed"), "w") as new:
            new.write("yes")
    finally:
        env.graph.unmount_rw_layer("c1")
    chain = env.graph.commit_rw_layer("c1")
    base = env.graph.lookup(image_id)
    config = json.loads(base.raw)
    config["rootfs"]["diff_ids"].append(env.graph.layers.get(chain).diff_id)
    child_id = env.graph.create_image(json.dumps(config).encode(), parent_id=image_id)
    env.graph.release_layer(chain)
    tree = env.tree(env.graph.lookup(child_id))
    assert tree["committed"] == b"yes" and "etc/motd" not in tree
    env.graph.release_rw_layer("c1")


# ---------------------------------------------------------------------------------------------
# Tag and delete
# ---------------------------------------------------------------------------------------------

def test_tag_points_a_new_name_at_the_image_and_emits_tag(env):
    image_id = import_tar(env, BASE, "t1")
    assert env.graph.tag("t1", "docker.io/wire/t1alias", "latest") == "wire/t1alias:latest"
    assert env.graph.lookup("wire/t1alias").id == image_id
    assert env.events[-1] == ("image", "tag", image_id, {"name": "wire/t1alias:latest"})


def test_tag_moves_an_existing_tag(env):
    import_tar(env, BASE, "t1")
    other = import_tar(env, THIRD)
    env.graph.tag(other, "t1", "")
    assert env.graph.lookup("t1").id == other


def test_tag_refuses_a_bad_tag(env):
    import_tar(env, BASE, "t1")
    with pytest.raises(InvalidParameter):
        env.graph.tag("t1", "t1", "bad tag!")


def test_delete_by_name_with_other_tags_only_untags(env):
    image_id = import_tar(env, BASE, "t1")
    env.graph.tag("t1", "t1", "v2")
    assert env.graph.delete("t1:v2") == [{"Untagged": "t1:v2"}]
    assert env.events[-1] == ("image", "untag", image_id, {"name": image_id})
    assert env.graph.lookup("t1").id == image_id


def test_delete_of_the_last_tag_deletes_the_image(env):
    image_id = import_tar(env, BASE, "t1")
    records = env.graph.delete("t1")
    assert records == [{"Untagged": "t1:latest"}, {"Deleted": image_id}, {"Deleted": diff_id(BASE)}]
    assert env.actions()[-2:] == ["untag", "delete"]


def test_delete_of_an_unknown_image_is_not_found(env):
    with pytest.raises(NotFound, match="^No such image: nonexistent:tag$"):
        env.graph.delete("nonexistent:tag")


def test_delete_by_id_referenced_in_several_repositories_must_be_forced(env):
    image_id = import_tar(env, BASE, "one")
    env.graph.tag("one", "two", "latest")
    with pytest.raises(Conflict) as raised:
        env.graph.delete(image_id[7:19])
    assert str(raised.value) == ("conflict: unable to delete %s (must be forced) - image is referenced in "
                                 "multiple repositories" % image_id[7:19])
    records = env.graph.delete(image_id[7:19], force=True)
    assert records[:2] == [{"Untagged": "one:latest"}, {"Untagged": "two:latest"}]
    assert {"Deleted": image_id} in records


def test_delete_by_id_with_one_tag_untags_and_deletes(env):
    image_id = import_tar(env, BASE, "solo")
    assert env.graph.delete(image_id)[:2] == [{"Untagged": "solo:latest"}, {"Deleted": image_id}]


def test_delete_by_name_used_by_a_container_must_be_forced(env):
    image_id = import_tar(env, BASE, "used")
    env.containers["c" * 64] = (image_id, False)
    with pytest.raises(Conflict) as raised:
        env.graph.delete("used")
    assert str(raised.value) == ('conflict: unable to remove repository reference "used" (must force) - '
                                 "container cccccccccccc is using its referenced image %s" % image_id[7:19])


def test_force_delete_by_name_used_by_a_stopped_container_untags_and_deletes(env):
    image_id = import_tar(env, BASE, "used")
    env.containers["c" * 64] = (image_id, False)
    assert env.graph.delete("used", force=True)[:2] == [{"Untagged": "used:latest"}, {"Deleted": image_id}]


def test_delete_by_id_used_by_a_stopped_container_must_be_forced(env):
    image_id = import_tar(env, BASE)
    env.containers["d" * 64] = (image_id, False)
    with pytest.raises(Conflict, match="must be forced\\) - image is being used by stopped container dddddddddddd"):
        env.graph.delete(image_id)


def test_delete_by_id_used_by_a_running_container_cannot_be_forced(env):
    image_id = import_tar(env, BASE)
    env.containers["e" * 64] = (image_id, True)
    with pytest.raises(Conflict) as raised:
        env.graph.delete(image_id, force=True)
    assert str(raised.value) == ("conflict: unable to delete %s (cannot be forced) - image is being used by "
                                 "running container eeeeeeeeeeee" % image_id[7:19])


def test_force_delete_by_name_under_a_running_container_only_untags(env):
    image_id = import_tar(env, BASE, "busy")
    env.containers["e" * 64] = (image_id, True)
    assert env.graph.delete("busy", force=True) == [{"Untagged": "busy:latest"}]
    assert env.graph.lookup(image_id).id == image_id


def test_delete_by_name_of_a_parent_image_only_untags_it(env):
    parent_id = import_tar(env, BASE, "parent")
    committed_child(env, parent_id, "child")
    assert env.graph.delete("parent") == [{"Untagged": "parent:latest"}]
    assert env.graph.lookup(parent_id).id == parent_id


def committed_child(env, parent_id, tag=None):
    """An image committed on top of `parent_id` (one more layer, parent link recorded)."""
    parent = env.graph.lookup(parent_id)
    chain = env.graph.register_layer(parent.top_chain_id, io.BytesIO(THIRD))
    config = json.loads(parent.raw)
    config["rootfs"]["diff_ids"].append(diff_id(THIRD))
    config["history"] = config["history"] + [{"created": config["created"], "created_by": "commit"}]
    child_id = env.graph.create_image(json.dumps(config).encode(), parent_id=parent_id)
    env.graph.release_layer(chain)
    if tag:
        env.graph.tag(child_id, tag, "")
    return child_id


def test_delete_of_an_image_with_children_is_a_hard_conflict(env):
    parent_id = import_tar(env, BASE)
    committed_child(env, parent_id, "child")
    with pytest.raises(Conflict, match="cannot be forced\\) - image has dependent child images"):
        env.graph.delete(parent_id, force=True)


def test_delete_prunes_the_untagged_parent(env):
    parent_id = import_tar(env, BASE)
    child_id = committed_child(env, parent_id, "child")
    records = env.graph.delete("child")
    assert [record.get("Deleted") for record in records[1:]] == [
        child_id, layermod.chain_id(diff_id(BASE), diff_id(THIRD)), parent_id, diff_id(BASE)]
    assert env.graph.images(all=True) == []


def test_delete_with_noprune_keeps_the_parent(env):
    parent_id = import_tar(env, BASE)
    committed_child(env, parent_id, "child")
    env.graph.delete("child", noprune=True)
    assert env.graph.lookup(parent_id).id == parent_id


def test_untagging_the_last_tag_drops_the_repositorys_digests(env):
    image_id = import_tar(env, BASE, "example.com/app:1")
    digest = "sha256:" + "cd" * 32
    env.graph.tagstore.add_digest(ref("example.com/app@" + digest), image_id)
    env.graph.tag(image_id, "other", "")
    records = env.graph.delete("example.com/app:1")
    assert records == [{"Untagged": "example.com/app:1"}, {"Untagged": "example.com/app@" + digest}]


# ---------------------------------------------------------------------------------------------
# List, history, prune, df
# ---------------------------------------------------------------------------------------------

def test_images_lists_summaries_in_the_api_shape(env):
    image_id = import_tar(env, BASE, "busybox")
    summary, = env.graph.images()
    assert summary == {"Containers": -1, "Created": env.graph.lookup(image_id).created.seconds,
                       "Id": image_id, "Labels": None, "ParentId": "", "RepoDigests": None,
                       "RepoTags": ["busybox:latest"], "SharedSize": -1,
                       "Size": summary["Size"], "VirtualSize": summary["Size"]}


def test_images_shows_untagged_heads_as_none(env):
    import_tar(env, BASE)
    summary, = env.graph.images()
    assert summary["RepoTags"] == ["<none>:<none>"] and summary["RepoDigests"] == ["<none>@<none>"]


def test_images_hides_intermediate_images_unless_all(env):
    parent_id = import_tar(env, BASE)
    child_id = committed_child(env, parent_id, "child")
    assert [s["Id"] for s in env.graph.images()] == [child_id]
    assert {s["Id"] for s in env.graph.images(all=True)} == {child_id, parent_id}
    assert next(s for s in env.graph.images(all=True) if s["Id"] == child_id)["ParentId"] == parent_id


def test_images_are_sorted_newest_first(env):
    old = image_config([BASE], created="2019-01-01T00:00:00Z")
    new = image_config([SECOND], created="2021-01-01T00:00:00Z")
    load(env, docker_archive([(old, [BASE], ["old:1"]), (new, [SECOND], ["new:1"])]))
    assert [s["RepoTags"] for s in env.graph.images()] == [["new:1"], ["old:1"]]


def test_images_filter_dangling(env):
    untagged = import_tar(env, BASE)
    tagged = import_tar(env, THIRD, "tagged")
    assert [s["Id"] for s in env.graph.images(filters={"dangling": ["true"]})] == [untagged]
    assert [s["Id"] for s in env.graph.images(filters={"dangling": ["false"]})] == [tagged]
    with pytest.raises(InvalidParameter, match="Invalid filter 'dangling"):
        env.graph.images(filters={"dangling": ["maybe"]})


def test_images_filter_label(env):
    load(env, docker_archive([(image_config([BASE], labels={"a": "1", "b": "2"}), [BASE], ["lab:1"]),
                              (image_config([SECOND], labels={"a": "9"}), [SECOND], ["lab:2"])]))
    assert [s["RepoTags"] for s in env.graph.images(filters={"label": ["b"]})] == [["lab:1"]]
    assert [s["RepoTags"] for s in env.graph.images(filters={"label": ["a=9"]})] == [["lab:2"]]
    assert len(env.graph.images(filters={"label": ["a"]})) == 2


def test_images_filter_reference_globs_and_narrows_repo_tags(env):
    image_id = import_tar(env, BASE, "busybox")
    env.graph.tag(image_id, "alpine", "3.10")
    import_tar(env, THIRD, "wire/thing")
    summaries = env.graph.images(filters={"reference": ["busybox"]})
    assert [s["RepoTags"] for s in summaries] == [["busybox:latest"]]
    assert env.graph.images(filters={"reference": ["wire*"]}) == []   # * stops at a slash
    assert [s["RepoTags"] for s in env.graph.images(filters={"reference": ["wire/*"]})] == [["wire/thing:latest"]]
    assert [s["RepoTags"] for s in env.graph.images(filters={"reference": ["alp*:3.*"]})] == [["alpine:3.10"]]


def test_images_filter_before_and_since(env):
    images = [(image_config([layer], created="20%d-01-01T00:00:00Z" % year), [layer], ["t:%d" % year])
              for layer, year in ((BASE, 19), (SECOND, 20), (THIRD, 21))]
    load(env, docker_archive(images))
    assert [s["RepoTags"] for s in env.graph.images(filters={"before": ["t:20"]})] == [["t:19"]]
    assert [s["RepoTags"] for s in env.graph.images(filters={"since": ["t:20"]})] == [["t:21"]]


def test_images_refuses_an_unknown_filter(env):
    with pytest.raises(InvalidParameter, match="^invalid filter 'color'$"):
        env.graph.images(filters={"color": ["red"]})


def test_history_lists_layers_newest_first_with_missing_ids(env):
    history = [{"created": "2020-01-01T00:00:00Z", "created_by": "ADD base"},
               {"created": "2020-01-02T00:00:00Z", "created_by": "RUN rm motd"},
               {"created": "2020-01-03T00:00:00Z", "created_by": "CMD sh", "empty_layer": True},
               {"created": "2020-01-04T00:00:00Z", "created_by": "ADD third", "comment": "c"}]
    layers = [BASE, SECOND, THIRD]
    load(env, docker_archive([(image_config(layers, history=history), layers, ["h:1"])]))
    image = env.graph.lookup("h:1")
    entries = env.graph.history("h:1")
    assert [e["CreatedBy"] for e in entries] == ["ADD third", "CMD sh", "RUN rm motd", "ADD base"]
    assert [e["Id"] for e in entries] == [image.id, "<missing>", "<missing>", "<missing>"]
    assert entries[0]["Tags"] == ["h:1"] and entries[1]["Tags"] is None
    assert entries[1]["Size"] == 0 and entries[0]["Size"] == env.graph.layers.get(image.chain_ids[2]).size
    assert entries[0]["Comment"] == "c" and entries[3]["Created"] == 1577836800


def test_history_of_an_imported_image_matches_dockerd(env):
    image_id = import_tar(env, BASE, "busybox")
    entry, = env.graph.history("busybox")
    assert entry["Comment"] == "Imported from -" and entry["CreatedBy"] == ""
    assert entry["Id"] == image_id and entry["Tags"] == ["busybox:latest"]


def test_history_names_ancestors_by_parent_link(env):
    parent_id = import_tar(env, BASE, "parent")
    child_id = committed_child(env, parent_id, "child")
    assert [e["Id"] for e in env.graph.history("child")] == [child_id, parent_id]


def test_prune_deletes_dangling_images_and_reports_space(env):
    dangling = import_tar(env, BASE)
    import_tar(env, THIRD, "kept")
    report = env.graph.prune(filters={"dangling": ["true"]})
    assert report["ImagesDeleted"] == [{"Deleted": dangling}, {"Deleted": diff_id(BASE)}]
    assert report["SpaceReclaimed"] == env_size_of(BASE)
    assert [s["RepoTags"] for s in env.graph.images()] == [["kept:latest"]]


def env_size_of(layer):
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return sum(member.size for member in tar.getmembers() if member.isreg())


def test_prune_with_nothing_to_do_reports_null(env):
    import_tar(env, BASE, "kept")
    assert env.graph.prune(filters={"dangling": ["true"], "label": ["nonexistent-wire-label=1"]}) == {
        "ImagesDeleted": None, "SpaceReclaimed": 0}


def test_prune_all_spares_images_containers_use(env):
    used = import_tar(env, BASE, "used")
    unused = import_tar(env, THIRD, "unused")
    env.containers["f" * 64] = (used, False)
    report = env.graph.prune(dangling_only=False)
    assert {"Deleted": unused} in report["ImagesDeleted"]
    assert env.graph.lookup("used").id == used


def test_prune_label_not_filter(env):
    load(env, docker_archive([(image_config([BASE], labels={"keep": "1"}), [BASE], []),
                              (image_config([SECOND], labels={"other": "1"}), [SECOND], [])]))
    report = env.graph.prune(filters={"label!": ["keep"]})
    assert len([r for r in report["ImagesDeleted"] if r.get("Deleted", "").startswith("sha256")]) == 2
    assert len(env.graph.images()) == 1


def test_count_and_disk_usage(env):
    first = import_tar(env, BASE, "a")
    layered_image(env)
    assert env.graph.count() == 2
    usage = env.graph.disk_usage([first, first])
    by_id = {s["Id"]: s for s in usage["Images"]}
    assert by_id[first]["Containers"] == 2 and by_id[first]["SharedSize"] == env_size_of(BASE)
    layer_sizes = sum(layer.size for layer in env.graph.layers.all_layers())
    assert usage["LayersSize"] == layer_sizes


# ---------------------------------------------------------------------------------------------
# A full disk
# ---------------------------------------------------------------------------------------------

def run_in_private_mount_namespace(function):
    """Run function() in a forked child with its own mount namespace; returns its JSON result.
    The child's mounts vanish with it: nothing is mounted in the test runner's namespace."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        result = {}
        try:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
            result = function()
        except BaseException as err:  # report anything to the parent
            result = {"child error": repr(err)}
        finally:
            os.write(write_fd, json.dumps(result).encode())
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        output = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(output)


@pytest.mark.parametrize("driver_name", DRIVERS)
def test_a_full_disk_says_no_space_left_and_registers_nothing(tmp_path, driver_name):
    small = tmp_path / "small"
    small.mkdir()
    big_layer = tar_bytes([("big", os.urandom(3 << 20))])

    def fill_the_disk():
        linux.mount("tmpfs", str(small), "tmpfs", 0, "size=1m")
        driver = graphdriver.new(str(small), driver_name)
        graph = Graph(str(small), driver, TagStore(str(small / "repositories")),
                      image_in_use=lambda image_id: None, image_running=lambda image_id: None)
        try:
            graph.import_image(io.BytesIO(big_layer), parse_normalized_named("full"))
        except System as err:
            message = str(err)
        driver.cleanup()
        layers_home = os.path.join(driver.home, "dir") if driver_name == "vfs" else driver.home
        return {"message": message, "layerdb": os.listdir(str(small / "graph/layerdb/sha256")),
                "driver": [n for n in os.listdir(layers_home) if n != "l"], "images": graph.count()}

    result = run_in_private_mount_namespace(fill_the_disk)
    assert "no space left on device" in result.get("message", result.get("child error", ""))
    assert result["layerdb"] == [] and result["driver"] == [] and result["images"] == 0


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------

def test_chain_id_of_a_base_layer_is_its_diff_id():
    assert layermod.chain_ids_of(["sha256:" + "a" * 64]) == ["sha256:" + "a" * 64]


def test_timestamp_round_trips_rfc3339nano():
    for text in ("2026-11-28T05:07:54.607041244Z", "2020-01-01T00:00:00Z", "2020-06-01T12:00:00.5+02:00"):
        assert Timestamp.parse(text).rfc3339nano() == text


def test_timestamp_trims_trailing_zeros_and_knows_zero_time():
    assert Timestamp.parse("2020-01-01T00:00:00.120000000Z").rfc3339nano() == "2020-01-01T00:00:00.12Z"
    assert Timestamp.parse(None).rfc3339nano() == "0001-01-01T00:00:00Z"
    assert Timestamp.parse("2020-06-01T02:00:00+02:00").seconds == Timestamp.parse("2020-06-01T00:00:00Z").seconds


def test_container_config_shape_orders_fields_like_go():
    shaped = container_config_shape({"cmd": ["sh"], "Labels": {"a": "b"}, "Unknown": 1, "ExposedPorts": {}})
    assert list(shaped)[:6] == ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr"]
    assert shaped["Cmd"] == ["sh"] and "Unknown" not in shaped and "ExposedPorts" not in shaped


def test_go_json_escapes_html_characters():
    assert image.go_json({"a": "<&>"}) == b'{"a":"\\u003c\\u0026\\u003e"}'


def test_glob_match_is_go_path_match():
    assert glob_match("busybox*", "busybox:latest")
    assert not glob_match("wire*", "wire/t1alias")
    assert glob_match("b?sybox", "busybox") and glob_match("[a-c]usybox", "busybox")
    assert not glob_match("[^b]usybox", "busybox")
    with pytest.raises(InvalidParameter, match="syntax error in pattern"):
        glob_match("[", "x")


def test_human_size_matches_go_units():
    assert tarexport.human_size(2048) == "2.048kB"
    assert tarexport.human_size(512) == "512B"
    assert tarexport.human_size(1984172) == "1.984MB"


def test_tar_split_recorder_reproduces_pax_and_long_names(tmp_path):
    long_name = "d/" + "x" * 150
    layer = tar_bytes([("d", None), (long_name, "long"), ("d/\u00e9", "accent")])
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / long_name).write_text("long")
    (root / "d" / "\u00e9").write_text("accent")
    split = str(tmp_path / "split.json.gz")
    with layermod.TarSplitRecorder(io.BytesIO(layer), split) as recorder:
        while recorder.read(7):
            pass
    out = io.BytesIO()
    layermod.assemble_tar(split, str(root), out)
    assert out.getvalue() == layer


def test_tar_split_assembly_refuses_to_follow_a_symlink_out_of_the_layer(tmp_path):
    layer = tar_bytes([("etc", ("symlink", "/etc")), ("etc/hostname", "x")])
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/etc", str(root / "etc"))
    split = str(tmp_path / "split.json.gz")
    with layermod.TarSplitRecorder(io.BytesIO(layer), split) as recorder:
        while recorder.read(1 << 20):
            pass
    with pytest.raises(System, match="cannot reassemble"):
        layermod.assemble_tar(split, str(root), io.BytesIO())
