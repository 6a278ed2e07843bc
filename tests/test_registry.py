"""Tests for drivers/registry.py and drivers/distribution.py: pull, push and login against real
registries (Debian's docker-registry) on 127.0.0.1, into a real graph (vfs) and tag store.

An autouse guard makes any connection or name lookup outside loopback fail the test, and every
service here points Docker Hub at a closed loopback port, so no test can reach the Internet.
"""
import base64
import io
import ipaddress
import json
import os
import select
import socket
import socketserver
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from drivers import distribution, errdefs, graphdriver, registry
from drivers.graph import Graph
from drivers.reference import parse_normalized_named
from drivers.tags import TagStore
from registry_fixtures import (OTHER_ARCH, LoopbackServer, OCILayout, QuietHandler, Registry, TokenServer,
                               docker_archive, fixture_registry, free_port, image_config, layer_tar,
                               make_certificate, sha256, skopeo_copy)


# ---------------------------------------------------------------------------------------------
# Guards and fixtures


def _is_loopback(host):
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail any connection or DNS lookup that would leave the machine."""
    real_connect, real_lookup = socket.create_connection, socket.getaddrinfo

    def connect(address, *args, **kwargs):
        assert _is_loopback(address[0]), "test tried to connect to %r" % (address,)
        return real_connect(address, *args, **kwargs)

    def lookup(host, *args, **kwargs):
        if not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, "lookup of %s blocked by the test" % host)
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def make_service(**options):
    """A RegistryService whose Docker Hub is a closed loopback port."""
    options.setdefault("hub_endpoint", "http://127.0.0.1:%d" % free_port())
    options.setdefault("timeout", 5)
    return registry.RegistryService(**options)


def no_container(image_id):
    """The graph's in-use checks: no containers exist in these tests."""
    return None


class Store(object):
    """A graph (vfs) and tag store in a temporary root, plus what the pull/push config needs."""

    def __init__(self, root):
        self.root = root
        self.tmp = os.path.join(root, "tmp")
        os.makedirs(self.tmp)
        self.driver = graphdriver.new(os.path.join(root, "vfs"), "vfs")
        self.tagstore = TagStore(os.path.join(root, "repositories-vfs"))
        self.events = []
        self.graph = Graph(root, self.driver, self.tagstore, image_in_use=no_container, image_running=no_container,
                           events=lambda *event: self.events.append(event))
        self.metadata = distribution.V2MetadataService(os.path.join(root, "distribution"))

    def config(self, service, **limits):
        return distribution.Config(service, self.graph, self.tagstore, self.metadata,
                                   events=lambda *event: self.events.append(event), tmp_dir=self.tmp, **limits)

    def pull(self, service, name, auth=None, platform=None, **limits):
        messages = []
        distribution.pull(self.config(service, **limits), parse_normalized_named(name), auth, platform,
                          messages.append)
        return messages

    def push(self, service, name, auth=None):
        messages = []
        distribution.push(self.config(service), parse_normalized_named(name), auth, messages.append)
        return messages

    def image_id(self, name):
        return self.graph.lookup(name).id

    def add_image(self, layers, name, label="local"):
        """An image made here (as a commit or load would), tagged `name`."""
        parent, held = None, []
        for layer in layers:
            parent = self.graph.register_layer(parent, io.BytesIO(layer), sha256(layer))
            held.append(parent)
        image_id = self.graph.create_image(image_config(layers, label=label))
        for chain in held:
            self.graph.release_layer(chain)
        self.tagstore.add(parse_normalized_named(name), image_id, force=True)
        return image_id


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "root"))


def statuses(messages):
    return [message.get("status") for message in messages]


LAYER_BASE = layer_tar({"etc/os-release": b"NAME=fixture\n", "bin/tool": b"x" * 300000})
LAYER_TOP = layer_tar({"app/data": os.urandom(40000)})


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """An open docker-registry with the shared fixture images, plus fix/foreign:1: an index
    with no image for this machine's platform."""
    with fixture_registry(str(tmp_path_factory.mktemp("registry")), LAYER_BASE, LAYER_TOP) as server:
        foreign = OCILayout(os.path.join(server.directory, "foreign"))
        s390x, _ = foreign.image([layer_tar({"arch": b"s390x"})], "s390x")
        ppc, _ = foreign.image([layer_tar({"arch": b"ppc64le"})], "ppc64le")
        foreign.index([s390x, ppc], "foreign")
        skopeo_copy("oci:%s:foreign" % foreign.directory, server, "fix/foreign:1", all_images=True)
        yield server


# ---------------------------------------------------------------------------------------------
# Pull


def test_pull_by_tag_stores_the_image_under_its_config_digest(reg, store):
    store.pull(make_service(), reg.host + "/fix/base:1")
    assert store.image_id(reg.host + "/fix/base:1") == sha256(reg.fixtures.base)


def test_pull_layer_has_the_files_of_the_image(reg, store):
    store.pull(make_service(), reg.host + "/fix/base:1")
    image = store.graph.lookup(reg.host + "/fix/base:1")
    out = io.BytesIO()
    store.graph.layer_tar(image.chain_ids[0], out)
    assert out.getvalue() == LAYER_BASE


def test_pull_progress_follows_dockerd(reg, store):
    messages = store.pull(make_service(), reg.host + "/fix/base:1")
    _, layer_digest = reg.manifest("fix/base", "1")
    layer_id = json.loads(reg.manifest("fix/base", "1")[0])["layers"][0]["digest"][7:19]
    assert messages[0] == {"status": "Pulling from fix/base", "id": "1"}
    assert messages[1] == {"status": "Pulling fs layer", "progressDetail": {}, "id": layer_id}
    layer_statuses = [m["status"] for m in messages if m.get("id") == layer_id]
    assert [s for i, s in enumerate(layer_statuses) if i == 0 or s != layer_statuses[i - 1]] == [
        "Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete", "Extracting",
        "Pull complete"]
    assert messages[-2] == {"status": "Digest: " + layer_digest}
    assert messages[-1] == {"status": "Status: Downloaded newer image for %s/fix/base:1" % reg.host}


def test_downloading_message_carries_detail_and_bar(reg, store):
    messages = store.pull(make_service(), reg.host + "/fix/base:1")
    last = [m for m in messages if m["status"] == "Downloading"][-1]
    total = last["progressDetail"]["total"]
    assert last["progressDetail"] == {"current": total, "total": total}
    assert last["progress"].startswith("[" + "=" * 50 + ">]")


def test_pull_records_the_repo_digest(reg, store):
    store.pull(make_service(), reg.host + "/fix/base:1")
    _, digest = reg.manifest("fix/base", "1")
    refs = [str(ref) for ref in store.tagstore.references(sha256(reg.fixtures.base))]
    assert "%s/fix/base@%s" % (reg.host, digest) in refs


def test_second_pull_is_up_to_date(reg, store):
    service = make_service()
    store.pull(service, reg.host + "/fix/base:1")
    messages = store.pull(service, reg.host + "/fix/base:1")
    assert messages[-1] == {"status": "Status: Image is up to date for %s/fix/base:1" % reg.host}
    assert "Pulling fs layer" not in statuses(messages)


def test_pull_by_digest(reg, store):
    _, digest = reg.manifest("fix/two", "1")
    messages = store.pull(make_service(), "%s/fix/two@%s" % (reg.host, digest))
    assert messages[0] == {"status": "Pulling from fix/two", "id": digest}
    assert store.image_id("%s/fix/two@%s" % (reg.host, digest)) == sha256(reg.fixtures.two)


def test_transfer_beyond_the_limit_says_waiting():
    messages = []
    slots = distribution.TransferSlots(1, distribution.ProgressOutput(messages.append), threading.Event())
    with slots.slot("first"):
        waiter = threading.Thread(target=lambda: slots.slot("second").__enter__())
        waiter.start()
        time.sleep(0.2)
        assert messages == [{"status": "Waiting", "progressDetail": {}, "id": "second"}]
    waiter.join(5)
    assert not waiter.is_alive()


def test_pull_with_one_download_at_a_time(reg, store):
    store.pull(make_service(), reg.host + "/fix/two:1", max_concurrent_downloads=1)
    assert store.image_id(reg.host + "/fix/two:1") == sha256(reg.fixtures.two)


def test_layer_already_present_is_not_downloaded_again(reg, store):
    service = make_service()
    store.pull(service, reg.host + "/fix/base:1")
    messages = store.pull(service, reg.host + "/fix/two:1")
    layers = json.loads(reg.manifest("fix/two", "1")[0])["layers"]
    assert {"status": "Already exists", "progressDetail": {}, "id": layers[0]["digest"][7:19]} in messages
    assert not [m for m in messages if m.get("id") == layers[0]["digest"][7:19] and m["status"] == "Downloading"]
    assert store.image_id(reg.host + "/fix/two:1") == sha256(reg.fixtures.two)


def test_index_pull_chooses_this_machines_platform(reg, store):
    store.pull(make_service(), reg.host + "/fix/multi:1")
    assert store.image_id(reg.host + "/fix/multi:1") == sha256(reg.fixtures.host_config)


def test_index_pull_honours_platform_option(reg, store):
    store.pull(make_service(), reg.host + "/fix/multi:1", platform="linux/" + OTHER_ARCH)
    assert store.image_id(reg.host + "/fix/multi:1") == sha256(reg.fixtures.other_config)


def test_index_pull_records_the_index_digest(reg, store):
    store.pull(make_service(), reg.host + "/fix/multi:1")
    _, index_digest = reg.manifest("fix/multi", "1")
    refs = [ref.digest for ref in store.tagstore.references(sha256(reg.fixtures.host_config))]
    assert index_digest in refs


def test_index_without_this_platform_is_a_clear_error(reg, store):
    with pytest.raises(errdefs.NotFound) as raised:
        store.pull(make_service(), reg.host + "/fix/foreign:1")
    assert str(raised.value) == "no matching manifest for %s in the manifest list entries" \
        % distribution.format_platform(distribution.host_platform())


def test_missing_tag_is_manifest_unknown(reg, store):
    with pytest.raises(errdefs.NotFound) as raised:
        store.pull(make_service(), reg.host + "/fix/base:nope")
    assert str(raised.value) == ("manifest for %s/fix/base:nope not found: manifest unknown: manifest unknown"
                                 % reg.host)


def test_missing_repository_is_not_found(reg, store):
    with pytest.raises(errdefs.NotFound) as raised:
        store.pull(make_service(), reg.host + "/no/such")
    assert "%s/no/such:latest not found" % reg.host in str(raised.value)


def test_pull_logs_a_pull_event(reg, store):
    store.pull(make_service(), reg.host + "/fix/base:1")
    pulls = [event for event in store.events if event[1] == "pull"]
    assert pulls == [("image", "pull", reg.host + "/fix/base:1",
                      {"fixture": "base", "name": reg.host + "/fix/base"})]


def test_insecure_loopback_registry_is_tried_over_https_first(reg):
    endpoints = make_service().lookup_pull_endpoints(reg.host)
    assert [endpoint.url for endpoint in endpoints] == ["https://" + reg.host, "http://" + reg.host]


# ---------------------------------------------------------------------------------------------
# Bad registries, bad content


def push_unique_image(server, repository, directory):
    """A two-layer image whose blobs no other test shares (so tampering with them is private)."""
    layers = [layer_tar({"unique": os.urandom(200000)}), layer_tar({"top": os.urandom(200000)})]
    path = os.path.join(directory, "unique.tar")
    docker_archive(path, layers)
    skopeo_copy("docker-archive:" + path, server, repository)
    return layers


def test_tampered_layer_fails_verification_and_leaves_nothing(reg, store, tmp_path):
    layers = push_unique_image(reg, "bad/layer:1", str(tmp_path))
    blob = json.loads(reg.manifest("bad/layer", "1")[0])["layers"][1]["digest"]
    data = bytearray(open(reg.blob_path(blob), "rb").read())
    data[100] ^= 0xFF
    with open(reg.blob_path(blob), "wb") as tampered:
        tampered.write(bytes(data))
    with pytest.raises(errdefs.DockerError) as raised:
        store.pull(make_service(), reg.host + "/bad/layer:1")
    assert str(raised.value) == "filesystem layer verification failed for digest " + blob
    assert not store.graph.has_layer(sha256(layers[0]))
    assert os.listdir(store.tmp) == []


def test_tampered_manifest_fails_verification(reg, store, tmp_path):
    push_unique_image(reg, "bad/manifest:1", str(tmp_path))
    body, digest = reg.manifest("bad/manifest", "1")
    with open(reg.blob_path(digest), "wb") as tampered:
        tampered.write(body + b" ")
    with pytest.raises(errdefs.DockerError) as raised:
        store.pull(make_service(), reg.host + "/bad/manifest:1")
    assert str(raised.value) == "manifest verification failed for digest " + digest


def test_registry_that_is_down_fails_fast(store):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(errdefs.DockerError) as raised:
        store.pull(make_service(), "127.0.0.1:%d/any/thing:1" % port)
    assert time.monotonic() - started < 5
    assert str(raised.value) == ('Get "http://127.0.0.1:%d/v2/": dial tcp 127.0.0.1:%d: connect: '
                                 'connection refused' % (port, port))


def test_registry_that_hangs_times_out(store):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(errdefs.DockerError) as raised:
            store.pull(make_service(timeout=1), "127.0.0.1:%d/any/thing:1" % silent.getsockname()[1])
    assert time.monotonic() - started < 6
    assert "timeout" in str(raised.value)


class FlakyProxy(LoopbackServer):
    """An HTTP front for a registry that cuts blob downloads short: the first `cuts` GETs of a
    blob send their headers and half the body, then drop the connection."""

    def __init__(self, upstream, cuts):
        self.upstream = upstream
        self.cuts = cuts
        self.ranges = []
        proxy = self

        class Handler(QuietHandler):
            def do_HEAD(self):
                self._forward(send_body=False)

            def do_GET(self):
                self._forward(send_body=True)

            def _forward(self, send_body):
                request = urllib.request.Request(proxy.upstream + self.path, method=self.command)
                for name in ("Accept", "Range", "Authorization"):
                    if self.headers.get(name):
                        request.add_header(name, self.headers[name])
                if self.headers.get("Range"):
                    proxy.ranges.append(self.headers["Range"])
                try:
                    response = urllib.request.urlopen(request, timeout=10)
                except urllib.error.HTTPError as err:
                    response = err
                body = response.read()
                self.send_response(response.status if hasattr(response, "status") else response.code)
                for name, value in response.headers.items():
                    if name.lower() not in ("connection", "transfer-encoding", "date"):
                        self.send_header(name, value)
                self.end_headers()
                cut = send_body and "/blobs/" in self.path and proxy.cuts > 0 and len(body) > 1000
                if cut:
                    proxy.cuts -= 1
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                elif send_body:
                    self.wfile.write(body)

        LoopbackServer.__init__(self, Handler)


def test_interrupted_download_resumes_with_a_range_request(reg, store):
    proxy = FlakyProxy(reg.url(""), cuts=1)
    try:
        store.pull(make_service(), proxy.host + "/fix/two:1")
    finally:
        proxy.close()
    assert store.image_id(proxy.host + "/fix/two:1") == sha256(reg.fixtures.two)
    assert proxy.ranges and proxy.ranges[0].startswith("bytes=")


def test_download_that_keeps_breaking_leaves_no_layer_or_file(reg, store):
    proxy = FlakyProxy(reg.url(""), cuts=1000)
    try:
        with pytest.raises(errdefs.DockerError):
            store.pull(make_service(), proxy.host + "/fix/two:1")
    finally:
        proxy.close()
    assert not store.graph.has_layer(sha256(LAYER_BASE))
    assert proxy.cuts < 1000 and os.listdir(store.tmp) == []


def test_client_that_goes_away_stops_the_pull_and_leaves_nothing(reg, store):
    def progress(message):
        if message["status"] == "Downloading":
            raise BrokenPipeError("client went away")

    with pytest.raises(BrokenPipeError):
        distribution.pull(store.config(make_service()), parse_normalized_named(reg.host + "/fix/two:1"),
                          None, None, progress)
    assert not store.graph.has_layer(sha256(LAYER_BASE))
    assert os.listdir(store.tmp) == []


# ---------------------------------------------------------------------------------------------
# Mirrors


def test_hub_pull_goes_to_the_mirror(reg, store):
    service = make_service(mirrors=["http://%s" % reg.host])
    messages = store.pull(service, "mirrored:1")
    assert messages[0] == {"status": "Pulling from library/mirrored", "id": "1"}
    assert messages[-1] == {"status": "Status: Downloaded newer image for mirrored:1"}
    assert store.image_id("mirrored:1") == sha256(reg.fixtures.base)


def test_hub_is_tried_after_a_mirror_without_the_image(reg, store, tmp_path):
    empty_mirror = Registry(str(tmp_path / "mirror")).start()
    try:
        service = make_service(mirrors=["http://%s" % empty_mirror.host], hub_endpoint="http://" + reg.host)
        store.pull(service, "mirrored:1")
    finally:
        empty_mirror.stop()
    assert store.image_id("mirrored:1") == sha256(reg.fixtures.base)


def test_hub_error_is_reported_when_every_endpoint_fails(store):
    hub_port = free_port()
    service = make_service(mirrors=["http://127.0.0.1:%d" % free_port()],
                           hub_endpoint="http://127.0.0.1:%d" % hub_port)
    with pytest.raises(errdefs.DockerError) as raised:
        store.pull(service, "alpine")
    assert str(raised.value).startswith('Get "http://127.0.0.1:%d/v2/"' % hub_port)


# ---------------------------------------------------------------------------------------------
# Push


def test_push_then_pull_back_gives_the_same_image_id(reg, store):
    name = reg.host + "/pushed/roundtrip:1"
    image_id = store.add_image([LAYER_BASE, layer_tar({"mine": os.urandom(5000)})], name)
    service = make_service()
    store.push(service, name)
    store.graph.delete(name, force=True)
    store.pull(service, name)
    assert store.image_id(name) == image_id


def test_push_reports_the_manifest_digest_and_size(reg, store):
    name = reg.host + "/pushed/digest:v1"
    store.add_image([layer_tar({"d": os.urandom(3000)})], name)
    messages = store.push(make_service(), name)
    body, digest = reg.manifest("pushed/digest", "v1")
    assert messages[0] == {"status": "The push refers to repository [%s/pushed/digest]" % reg.host}
    assert messages[-2] == {"status": "v1: digest: %s size: %d" % (digest, len(body))}
    assert messages[-1] == {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": digest, "Size": len(body)}}


def test_pushed_manifest_is_schema2_with_gzip_layers(reg, store):
    name = reg.host + "/pushed/schema:1"
    layer = layer_tar({"s": os.urandom(3000)})
    store.add_image([layer], name)
    store.push(make_service(), name)
    manifest = json.loads(reg.manifest("pushed/schema", "1")[0])
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    with open(reg.blob_path(manifest["layers"][0]["digest"]), "rb") as blob:
        assert blob.read(2) == b"\x1f\x8b"


def test_push_progress_prepares_then_pushes_each_layer(reg, store):
    name = reg.host + "/pushed/progress:1"
    layer = layer_tar({"p": os.urandom(3000)})
    store.add_image([layer], name)
    messages = store.push(make_service(), name)
    layer_id = sha256(layer)[7:19]
    layer_statuses = [m["status"] for m in messages if m.get("id") == layer_id]
    assert layer_statuses[0] == "Preparing" and layer_statuses[-1] == "Pushed"
    assert "Pushing" in layer_statuses


def test_second_push_says_layer_already_exists(reg, store):
    name = reg.host + "/pushed/again:1"
    layer = layer_tar({"a": os.urandom(3000)})
    store.add_image([layer], name)
    service = make_service()
    store.push(service, name)
    messages = store.push(service, name)
    assert {"status": "Layer already exists", "progressDetail": {}, "id": sha256(layer)[7:19]} in messages


def test_push_to_another_repository_mounts_the_layer(reg, store):
    layer = layer_tar({"m": os.urandom(3000)})
    store.add_image([layer], reg.host + "/pushed/source:1")
    service = make_service()
    store.push(service, reg.host + "/pushed/source:1")
    store.tagstore.add(parse_normalized_named(reg.host + "/pushed/target:1"),
                       store.image_id(reg.host + "/pushed/source:1"))
    messages = store.push(service, reg.host + "/pushed/target:1")
    assert {"status": "Mounted from pushed/source", "progressDetail": {}, "id": sha256(layer)[7:19]} in messages
    assert reg.has_manifest("pushed/target", "1")


def test_push_records_the_repo_digest(reg, store):
    name = reg.host + "/pushed/recorded:1"
    image_id = store.add_image([layer_tar({"r": os.urandom(3000)})], name)
    store.push(make_service(), name)
    _, digest = reg.manifest("pushed/recorded", "1")
    assert digest in [ref.digest for ref in store.tagstore.references(image_id)]


def test_push_of_unknown_tag_fails(reg, store):
    with pytest.raises(errdefs.NotFound) as raised:
        store.push(make_service(), reg.host + "/pushed/none:1")
    assert str(raised.value) == "tag does not exist: %s/pushed/none:1" % reg.host


def test_push_logs_a_push_event(reg, store):
    name = reg.host + "/pushed/event:1"
    store.add_image([layer_tar({"e": os.urandom(3000)})], name)
    store.push(make_service(), name)
    assert [event[:3] for event in store.events if event[1] == "push"] == [("image", "push", name)]


# ---------------------------------------------------------------------------------------------
# Basic auth (htpasswd) and token auth


@pytest.fixture(scope="module")
def basic_reg(tmp_path_factory, reg):
    directory = str(tmp_path_factory.mktemp("basic"))
    htpasswd = os.path.join(directory, "htpasswd")
    with open(htpasswd, "wb") as out:
        out.write(subprocess.run(["htpasswd", "-Bbn", "alice", "s3cret"], check=True,
                                 stdout=subprocess.PIPE).stdout)
    server = Registry(directory, auth={"htpasswd": htpasswd}).start()
    skopeo_copy("docker-archive:" + os.path.join(reg.directory, "base.tar"), server, "secret/base:1",
                credentials=("alice", "s3cret"))
    yield server
    server.stop()


ALICE = {"username": "alice", "password": "s3cret"}


def test_login_with_good_basic_credentials(basic_reg):
    answer = make_service().login(dict(ALICE, serveraddress=basic_reg.host))
    assert answer == {"Status": "Login Succeeded", "IdentityToken": ""}


def test_login_with_bad_basic_credentials_is_unauthorized(basic_reg):
    with pytest.raises(errdefs.Unauthorized) as raised:
        make_service().login({"username": "alice", "password": "wrong", "serveraddress": basic_reg.host})
    assert str(raised.value) == ("login attempt to http://%s/v2/ failed with status: 401 Unauthorized"
                                 % basic_reg.host)


def test_errors_never_show_the_password(basic_reg, token_reg):
    for server in (basic_reg, token_reg):
        with pytest.raises(errdefs.Unauthorized) as raised:
            make_service().login({"username": "alice", "password": "hunter2-secret", "serveraddress": server.host})
        assert "hunter2" not in str(raised.value)


def test_pull_from_basic_auth_registry_with_credentials(basic_reg, reg, store):
    store.pull(make_service(), basic_reg.host + "/secret/base:1", auth=ALICE)
    assert store.image_id(basic_reg.host + "/secret/base:1") == sha256(reg.fixtures.base)


def test_auth_field_of_the_cli_works_like_username_and_password(basic_reg, store):
    auth = {"auth": base64.b64encode(b"alice:s3cret").decode()}
    store.pull(make_service(), basic_reg.host + "/secret/base:1", auth=auth)
    assert store.graph.lookup(basic_reg.host + "/secret/base:1")


def test_pull_from_basic_auth_registry_without_credentials_fails(basic_reg, store):
    with pytest.raises(errdefs.DockerError) as raised:
        store.pull(make_service(), basic_reg.host + "/secret/base:1")
    assert str(raised.value) == ('Head "http://%s/v2/secret/base/manifests/1": no basic auth credentials'
                                 % basic_reg.host)


@pytest.fixture(scope="module")
def token_reg(tmp_path_factory, reg):
    directory = str(tmp_path_factory.mktemp("token"))
    tokens = TokenServer(os.path.join(directory, "auth"), {"alice": "s3cret"}).start()
    server = Registry(directory, auth={"token": tokens}).start()
    server.tokens = tokens
    service = make_service()
    pusher = Store(os.path.join(directory, "pusher"))
    pusher.add_image([LAYER_BASE], server.host + "/private/base:1", label="base")
    pusher.add_image([LAYER_BASE], server.host + "/public/base:1", label="base")
    pusher.push(service, server.host + "/private/base:1", auth=ALICE)
    pusher.push(service, server.host + "/public/base:1", auth=ALICE)
    server.image_id = pusher.image_id(server.host + "/public/base:1")
    yield server
    server.stop()
    tokens.stop()


def test_token_login_with_good_credentials_returns_identity_token(token_reg):
    answer = make_service().login(dict(ALICE, serveraddress=token_reg.host))
    assert answer["Status"] == "Login Succeeded"
    assert answer["IdentityToken"] in token_reg.tokens.refresh_tokens


def test_token_login_with_bad_credentials_is_unauthorized(token_reg):
    with pytest.raises(errdefs.Unauthorized) as raised:
        make_service().login({"username": "alice", "password": "nope", "serveraddress": token_reg.host})
    assert str(raised.value) == 'Get "http://%s/v2/": unauthorized: incorrect username or password' \
        % token_reg.host


def test_anonymous_token_pull_of_a_public_repository(token_reg, store):
    store.pull(make_service(), token_reg.host + "/public/base:1")
    assert store.image_id(token_reg.host + "/public/base:1") == token_reg.image_id


def test_anonymous_pull_of_a_private_repository_is_denied(token_reg, store):
    with pytest.raises(errdefs.NotFound) as raised:
        store.pull(make_service(), token_reg.host + "/private/base:1")
    assert str(raised.value).startswith(
        "pull access denied for %s/private/base, repository does not exist or may require "
        "'docker login': denied: " % token_reg.host)


def test_token_pull_with_credentials_sends_them_to_the_token_server(token_reg, store):
    store.pull(make_service(), token_reg.host + "/private/base:1", auth=ALICE)
    assert store.image_id(token_reg.host + "/private/base:1") == token_reg.image_id
    method, query, authorization = token_reg.tokens.requests[-1]
    assert query["scope"] == ["repository:private/base:pull"] and authorization.startswith("Basic ")


def test_identity_token_is_exchanged_for_an_access_token(token_reg, store):
    identity = make_service().login(dict(ALICE, serveraddress=token_reg.host))["IdentityToken"]
    store.pull(make_service(), token_reg.host + "/private/base:1", auth={"identitytoken": identity})
    assert token_reg.tokens.requests[-1][0] == "POST"


# ---------------------------------------------------------------------------------------------
# Redirects, proxies and TLS


class RecordingServer(LoopbackServer):
    """A tiny HTTP server: answers `routes[path]` = (status, headers, body), records requests."""

    def __init__(self, routes):
        self.requests = []
        recorder = self

        class Handler(QuietHandler):
            def do_GET(self):
                recorder.requests.append((self.path, dict(self.headers)))
                status, headers, body = routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        LoopbackServer.__init__(self, Handler)


def test_redirect_to_another_host_drops_the_authorization_header():
    cdn = RecordingServer({"/blob": (200, {}, b"data")})
    origin = RecordingServer({
        "/v2/": (401, {"WWW-Authenticate": 'Basic realm="r"'}, b""),
        "/v2/x/blobs/sha256:aa": (307, {"Location": "http://%s/blob" % cdn.host}, b"")})
    try:
        service = make_service()
        endpoint = service.lookup_pull_endpoints(origin.host)[1]
        repository = service.new_repository(endpoint, "x", ALICE, ("pull",))
        repository.ping()
        response = repository.open_blob("sha256:aa")
        assert response.read() == b"data"
        response.close()
    finally:
        cdn.close()
        origin.close()
    assert origin.requests[-1][1].get("Authorization", "").startswith("Basic ")
    assert "Authorization" not in cdn.requests[-1][1]


class ConnectProxy(LoopbackServer):
    """An HTTP proxy that sends every host to 127.0.0.1 (keeping the port): CONNECT tunnels and
    absolute-form plain HTTP requests. `targets` lists the host:ports asked for."""

    def __init__(self):
        self.targets = []
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                head = b""
                while b"\r\n\r\n" not in head:
                    data = self.request.recv(65536)
                    if not data:
                        return
                    head += data
                line, rest = head.split(b"\r\n", 1)
                method, target, version = line.decode().split(" ")
                if method == "CONNECT":
                    proxy.targets.append(target)
                    upstream = socket.create_connection(("127.0.0.1", int(target.rsplit(":", 1)[1])))
                    self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    leftover = head.split(b"\r\n\r\n", 1)[1]
                else:
                    parts = target.split("/", 3)
                    proxy.targets.append(parts[2])
                    upstream = socket.create_connection(("127.0.0.1", int(parts[2].rsplit(":", 1)[1])))
                    leftover = ("%s /%s %s\r\n" % (method, parts[3] if len(parts) > 3 else "", version)).encode() + rest
                upstream.sendall(leftover)
                self._relay(self.request, upstream)
                upstream.close()

            @staticmethod
            def _relay(client, upstream):
                sockets = [client, upstream]
                while True:
                    readable, _, _ = select.select(sockets, [], [], 10)
                    if not readable:
                        return
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            return
                        (upstream if sock is client else client).sendall(data)

        LoopbackServer.__init__(self, Handler, socketserver.ThreadingTCPServer)
        self.url = "http://" + self.host


@pytest.fixture
def proxy(monkeypatch):
    server = ConnectProxy()
    monkeypatch.setenv("HTTPS_PROXY", server.url)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    yield server
    server.close()


def test_pull_through_a_proxy_never_resolves_the_registry_name(reg, store, proxy):
    name = "registry.test:%d" % reg.port
    store.pull(make_service(insecure_registries=[name]), name + "/fix/base:1")
    assert store.image_id(name + "/fix/base:1") == sha256(reg.fixtures.base)
    assert proxy.targets[0] == name


def test_no_proxy_is_honoured(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert registry.proxy_for("https", "internal.example") is None
    assert registry.proxy_for("https", "other.example").netloc == "127.0.0.1:3128"


def test_loopback_is_never_proxied(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert registry.proxy_for("http", "127.0.0.1") is None


@pytest.fixture(scope="module")
def tls_reg(tmp_path_factory, reg):
    """A TLS registry known as registry.test (reached through the proxy): a secure registry."""
    directory = str(tmp_path_factory.mktemp("tls"))
    cert, key = make_certificate(directory, "registry.test", "DNS:registry.test")
    server = Registry(directory, tls=(cert, key)).start()
    server.cert = cert
    skopeo_copy("docker-archive:" + os.path.join(reg.directory, "base.tar"), server, "fix/base:1")
    yield server
    server.stop()


def test_tls_registry_verified_with_ca_from_certs_d(tls_reg, reg, store, proxy, tmp_path):
    name = "registry.test:%d" % tls_reg.port
    os.makedirs(str(tmp_path / "certs.d" / name))
    with open(tls_reg.cert, "rb") as cert, open(str(tmp_path / "certs.d" / name / "ca.crt"), "wb") as ca:
        ca.write(cert.read())
    store.pull(make_service(certs_dir=str(tmp_path / "certs.d")), name + "/fix/base:1")
    assert store.image_id(name + "/fix/base:1") == sha256(reg.fixtures.base)


def test_tls_registry_with_unknown_ca_is_refused(tls_reg, store, proxy, tmp_path):
    name = "registry.test:%d" % tls_reg.port
    with pytest.raises(errdefs.DockerError) as raised:
        store.pull(make_service(certs_dir=str(tmp_path / "none")), name + "/fix/base:1")
    assert str(raised.value).startswith('Get "https://%s/v2/": tls: failed to verify certificate: x509: ' % name)


# ---------------------------------------------------------------------------------------------
# Service configuration and protocol details


def test_info_shows_default_insecure_cidr_and_mirrors():
    info = make_service(mirrors=["https://mirror.example"], insecure_registries=["10.0.0.0/8", "my.reg:5000"]).info()
    assert info["InsecureRegistryCIDRs"] == ["10.0.0.0/8", "127.0.0.0/8"]
    assert info["Mirrors"] == ["https://mirror.example/"]
    assert info["IndexConfigs"]["docker.io"] == {"Name": "docker.io", "Mirrors": ["https://mirror.example/"],
                                                 "Secure": True, "Official": True}
    assert info["IndexConfigs"]["my.reg:5000"]["Secure"] is False


def test_mirror_with_a_path_is_refused():
    with pytest.raises(errdefs.InvalidParameter) as raised:
        make_service(mirrors=["https://mirror.example/v2/"])
    assert "path, query, or fragment at end of the URI" in str(raised.value)


def test_hub_pulls_try_mirrors_before_hub():
    service = make_service(mirrors=["http://127.0.0.1:1"], hub_endpoint="https://registry-1.docker.io")
    endpoints = service.lookup_pull_endpoints("docker.io")
    assert [(e.url, e.mirror) for e in endpoints] == [("http://127.0.0.1:1", True),
                                                      ("https://registry-1.docker.io", False)]
    assert [e.url for e in service.lookup_push_endpoints("docker.io")] == ["https://registry-1.docker.io"]


def test_secure_registry_gets_no_plain_http_endpoint():
    assert [e.url for e in make_service().lookup_pull_endpoints("10.1.2.3:5000")] == ["https://10.1.2.3:5000"]


def test_insecure_cidr_makes_registry_insecure():
    assert not make_service(insecure_registries=["10.0.0.0/8"]).is_secure("10.1.2.3:5000")


def test_bearer_challenge_is_parsed():
    scheme, params = registry.parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry.example",
                      "scope": "repository:a/b:pull"}


class Headers(object):
    def __init__(self, values=()):
        self.values = list(values)

    def get_all(self, name):
        return self.values


def test_insufficient_scope_challenge_is_denied():
    error = registry.parse_error_response(401, "Unauthorized", Headers(
        ['Bearer realm="x",error="insufficient_scope"']), b"{}")
    assert str(error) == "denied: requested access to the resource is denied"


def test_hub_details_body_is_unauthorized():
    error = registry.parse_error_response(401, "Unauthorized", Headers(),
                                          b'{"details":"incorrect username or password"}')
    assert str(error) == "unauthorized: incorrect username or password"


def test_non_json_error_body_is_quoted():
    error = registry.parse_error_response(404, "Not Found", Headers(), b"nope")
    assert str(error).startswith('error parsing HTTP 404 response body: ') and str(error).endswith(': "nope"')


def test_arm_v7_host_falls_back_to_v6_image():
    entries = [{"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
               {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]
    assert distribution.choose_manifest(entries, ("linux", "arm", "v7"))["digest"] == "sha256:" + "1" * 64


def test_arm64_matches_entry_with_v8_variant():
    entries = [{"digest": "sha256:" + "3" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]
    assert distribution.choose_manifest(entries, ("linux", "aarch64", ""))["digest"] == "sha256:" + "3" * 64


def test_attestation_manifests_are_never_chosen():
    entries = [{"digest": "sha256:" + "4" * 64, "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}]
    with pytest.raises(errdefs.NotFound):
        distribution.choose_manifest(entries, ("unknown", "unknown", ""))
