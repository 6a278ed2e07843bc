"""Registry end to end: the real docker CLI pulls, pushes and logs in through a real pydockerd,
against real registries (Debian's docker-registry) on loopback.

Each test boots its own daemon (a fraction of a second), so tags, credentials in the CLI's
DOCKER_CONFIG and events never leak from one test into another. The registries are shared by
the module. Nothing here reaches anything but loopback: the registries listen on 127.0.0.1 (or
::1), and every daemon is given a proxy on a closed loopback port, so a pull that would leave the
machine (Docker Hub when a mirror lacks the image) fails instead.
"""
import base64
import json
import os
import subprocess
import time

import pytest

from conftest import build_busybox_rootfs
from containers_support import write_docker_archive
from registry_fixtures import (HOST_ARCH, OTHER_ARCH, Registry, TokenServer, docker_archive, fixture_registry,
                               free_port, layer_tar, sha256, skopeo_copy)

LAYER_BASE = layer_tar({"etc/os-release": b"NAME=fixture\n", "bin/tool": os.urandom(300000)})
LAYER_TOP = layer_tar({"app/data": os.urandom(40000)})
ALICE = ("alice", "s3cret")


# ---------------------------------------------------------------------------------------------
# Registries and daemons


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """An open registry holding the shared fixture images, plus one repository with two tags
    (fix/tags:a is the base image, fix/tags:b the two-layer one)."""
    with fixture_registry(str(tmp_path_factory.mktemp("registry")), LAYER_BASE, LAYER_TOP) as server:
        skopeo_copy("docker-archive:" + os.path.join(server.directory, "base.tar"), server, "fix/tags:a")
        skopeo_copy("docker-archive:" + os.path.join(server.directory, "two.tar"), server, "fix/tags:b")
        yield server


@pytest.fixture(scope="module")
def basic_reg(tmp_path_factory, reg):
    """A registry behind htpasswd (Basic) auth, with the base image in secret/base:1."""
    directory = str(tmp_path_factory.mktemp("basic"))
    htpasswd = os.path.join(directory, "htpasswd")
    with open(htpasswd, "wb") as out:
        out.write(subprocess.run(["htpasswd", "-Bbn"] + list(ALICE), check=True,
                                 stdout=subprocess.PIPE).stdout)
    server = Registry(directory, auth={"htpasswd": htpasswd}).start()
    skopeo_copy("docker-archive:" + os.path.join(reg.directory, "base.tar"), server, "secret/base:1",
                credentials=ALICE)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_reg(tmp_path_factory, reg):
    """A registry behind a Bearer token server; private/base:1 needs a login, public/ does not."""
    directory = str(tmp_path_factory.mktemp("token"))
    tokens = TokenServer(os.path.join(directory, "auth"), dict([ALICE])).start()
    server = Registry(directory, auth={"token": tokens}).start()
    server.tokens = tokens
    for repository in ("private/base:1", "public/base:1"):
        skopeo_copy("docker-archive:" + os.path.join(reg.directory, "base.tar"), server, repository,
                    credentials=ALICE)
    yield server
    server.stop()
    tokens.stop()


@pytest.fixture(scope="module")
def ipv6_reg(tmp_path_factory, reg):
    """The open registry's storage served on [::1]: loopback, but outside 127.0.0.0/8, so
    dockerd (and pydockerd) treat it as secure unless told otherwise."""
    server = Registry(str(tmp_path_factory.mktemp("ipv6")), listen="::1", storage=reg.storage).start()
    yield server
    server.stop()


def no_way_out(port):
    """Daemon environment: every proxied request (anything not loopback) dies on closed `port`."""
    closed = "http://127.0.0.1:%d" % port
    env = {name: closed for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}
    env.update({"NO_PROXY": None, "no_proxy": None})
    return env


@pytest.fixture
def start_daemon(make_daemon):
    """make_daemon for this module: the daemon's proxy is a closed loopback port (pydockerd never
    proxies loopback), so a pull meant for Docker Hub or any other outside host fails at once."""
    def start(*flags):
        port = free_port()
        daemon = make_daemon("-b", "none", *flags, env=no_way_out(port))
        daemon.closed_proxy_port = port
        return daemon
    return start


@pytest.fixture
def daemon(start_daemon):
    return start_daemon()


@pytest.fixture
def mirror_daemon(start_daemon, reg):
    """A daemon whose Docker Hub mirror is the open registry (and which cannot reach Hub)."""
    return start_daemon("--registry-mirror", "http://" + reg.host)


# ---------------------------------------------------------------------------------------------
# Helpers


def out(result):
    return result.stdout.decode().strip()


def lines(result):
    return out(result).splitlines()


def inspect(daemon, name):
    return json.loads(out(daemon.docker("image", "inspect", name)))[0]


def manifest_layers(server, repository, tag):
    return json.loads(server.manifest(repository, tag)[0])["layers"]


def cli_auths(daemon):
    """The `auths` section of the CLI's config.json (conftest points DOCKER_CONFIG there)."""
    path = os.path.join(daemon.dir, "cli", "config.json")
    if not os.path.exists(path):
        return {}
    with open(path) as config:
        return json.load(config).get("auths", {})


def load_unique_image(daemon, directory, name, layer_count=2):
    """An image made locally (docker load of a tar built here), tagged `name`; returns its ID."""
    layers = [layer_tar({"unique%d" % number: os.urandom(20000)}) for number in range(layer_count)]
    path = os.path.join(directory, "unique.tar")
    config = docker_archive(path, layers, label="local")
    daemon.docker("load", "-i", path)
    daemon.docker("tag", sha256(config), name)
    return sha256(config), layers


def login(daemon, server, user, password):
    return daemon.docker("login", server.host, "-u", user, "--password-stdin", input=password.encode(),
                         check=False)


def image_events(daemon, since, action):
    """`docker events` between `since` and now, filtered to one image action."""
    result = daemon.docker("events", "--since", "%.9f" % since, "--until", "%.9f" % time.time(),
                           "--filter", "type=image", "--filter", "event=" + action,
                           "--format", "{{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}")
    return [(line.split(" ", 2)[0], line.split(" ", 2)[1], json.loads(line.split(" ", 2)[2]))
            for line in lines(result)]


# ---------------------------------------------------------------------------------------------
# Pull


def test_pull_by_tag_prints_dockerd_progress(reg, daemon):
    result = daemon.docker("pull", reg.host + "/fix/two:1")
    printed = lines(result)
    _, digest = reg.manifest("fix/two", "1")
    assert printed[0] == "1: Pulling from fix/two"
    for layer in manifest_layers(reg, "fix/two", "1"):
        short = layer["digest"][7:19]
        statuses = [line.split(": ", 1)[1] for line in printed if line.startswith(short + ": ")]
        assert statuses == ["Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete"]
    assert printed[-3:] == ["Digest: " + digest, "Status: Downloaded newer image for %s/fix/two:1" % reg.host,
                            reg.host + "/fix/two:1"]


def test_pulled_image_is_listed_by_docker_images(reg, daemon):
    daemon.docker("pull", reg.host + "/fix/two:1")
    listed = lines(daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
    assert listed == ["%s/fix/two:1 %s" % (reg.host, sha256(reg.fixtures.two)[7:19])]


def test_pulled_image_id_is_the_config_digest(reg, daemon):
    daemon.docker("pull", reg.host + "/fix/two:1")
    image = inspect(daemon, reg.host + "/fix/two:1")
    assert image["Id"] == sha256(reg.fixtures.two)
    assert image["RootFS"]["Layers"] == [sha256(LAYER_BASE), sha256(LAYER_TOP)]


def test_pull_records_repo_digests(reg, daemon):
    daemon.docker("pull", reg.host + "/fix/two:1")
    _, digest = reg.manifest("fix/two", "1")
    assert inspect(daemon, reg.host + "/fix/two:1")["RepoDigests"] == ["%s/fix/two@%s" % (reg.host, digest)]
    listed = lines(daemon.docker("images", "--digests", "--format", "{{.Repository}} {{.Digest}}"))
    assert listed == ["%s/fix/two %s" % (reg.host, digest)]


def test_pull_by_digest(reg, daemon):
    _, digest = reg.manifest("fix/two", "1")
    name = "%s/fix/two@%s" % (reg.host, digest)
    result = daemon.docker("pull", name)
    assert lines(result)[0] == "%s: Pulling from fix/two" % digest
    assert lines(result)[-1] == name
    image = inspect(daemon, name)
    assert image["Id"] == sha256(reg.fixtures.two)
    assert (image["RepoTags"], image["RepoDigests"]) == ([], [name])


def test_pull_of_an_index_chooses_this_machines_platform(reg, daemon):
    daemon.docker("pull", reg.host + "/fix/multi:1")
    image = inspect(daemon, reg.host + "/fix/multi:1")
    assert (image["Id"], image["Architecture"]) == (sha256(reg.fixtures.host_config), HOST_ARCH)


def test_pull_with_platform_picks_another_architecture(reg, daemon):
    daemon.docker("pull", "--platform", "linux/" + OTHER_ARCH, reg.host + "/fix/multi:1")
    image = inspect(daemon, reg.host + "/fix/multi:1")
    assert (image["Id"], image["Architecture"]) == (sha256(reg.fixtures.other_config), OTHER_ARCH)


def test_pull_of_an_index_records_the_index_digest(reg, daemon):
    daemon.docker("pull", reg.host + "/fix/multi:1")
    _, index_digest = reg.manifest("fix/multi", "1")
    assert inspect(daemon, reg.host + "/fix/multi:1")["RepoDigests"] == [
        "%s/fix/multi@%s" % (reg.host, index_digest)]


def test_second_pull_says_image_is_up_to_date(reg, daemon):
    daemon.docker("pull", reg.host + "/fix/two:1")
    printed = lines(daemon.docker("pull", reg.host + "/fix/two:1"))
    assert printed[-2] == "Status: Image is up to date for %s/fix/two:1" % reg.host
    assert not [line for line in printed if "Pulling fs layer" in line]


def test_layer_already_present_is_not_downloaded_again(reg, daemon):
    daemon.docker("pull", reg.host + "/fix/base:1")
    printed = lines(daemon.docker("pull", reg.host + "/fix/two:1"))
    base, top = [layer["digest"][7:19] for layer in manifest_layers(reg, "fix/two", "1")]
    assert base + ": Already exists" in printed
    assert [line for line in printed if line.startswith(base)] == [base + ": Already exists"]
    assert top + ": Pull complete" in printed


def test_pull_all_tags_pulls_every_tag(reg, daemon):
    printed = lines(daemon.docker("pull", "--all-tags", reg.host + "/fix/tags"))
    assert printed[-2:] == ["Status: Downloaded newer image for %s/fix/tags" % reg.host, reg.host + "/fix/tags"]
    listed = lines(daemon.docker("images", "--format", "{{.Tag}} {{.ID}}", reg.host + "/fix/tags"))
    assert sorted(listed) == ["a " + sha256(reg.fixtures.base)[7:19], "b " + sha256(reg.fixtures.two)[7:19]]


def test_pull_is_reported_by_docker_events(reg, daemon):
    since = time.time()
    daemon.docker("pull", reg.host + "/fix/base:1")
    assert image_events(daemon, since, "pull") == [
        ("pull", reg.host + "/fix/base:1", {"fixture": "base", "name": reg.host + "/fix/base"})]


# ---------------------------------------------------------------------------------------------
# Push


def test_push_rmi_pull_gives_the_same_image_id(reg, daemon, tmp_path):
    name = reg.host + "/pushed/roundtrip:1"
    image_id, _ = load_unique_image(daemon, str(tmp_path), name)
    daemon.docker("push", name)
    daemon.docker("rmi", name)
    assert out(daemon.docker("images", "-q")) == ""
    daemon.docker("pull", name)
    assert inspect(daemon, name)["Id"] == image_id


def test_push_prints_progress_and_the_registry_digest(reg, daemon, tmp_path):
    name = reg.host + "/pushed/digest:v1"
    _, layers = load_unique_image(daemon, str(tmp_path), name)
    printed = lines(daemon.docker("push", name))
    body, digest = reg.manifest("pushed/digest", "v1")
    assert printed[0] == "The push refers to repository [%s/pushed/digest]" % reg.host
    for layer in layers:
        assert [line for line in printed if line.startswith(sha256(layer)[7:19])] == [
            sha256(layer)[7:19] + ": Preparing", sha256(layer)[7:19] + ": Pushed"]
    assert printed[-1] == "v1: digest: %s size: %d" % (digest, len(body))


def test_second_push_says_layer_already_exists(reg, daemon, tmp_path):
    name = reg.host + "/pushed/again:1"
    _, layers = load_unique_image(daemon, str(tmp_path), name)
    first = lines(daemon.docker("push", name))
    second = lines(daemon.docker("push", name))
    for layer in layers:
        assert sha256(layer)[7:19] + ": Layer already exists" in second
    assert second[-1] == first[-1]


def test_push_of_a_layer_from_another_repository_mounts_it(reg, daemon, tmp_path):
    image_id, layers = load_unique_image(daemon, str(tmp_path), reg.host + "/pushed/source:1", layer_count=1)
    daemon.docker("push", reg.host + "/pushed/source:1")
    daemon.docker("tag", image_id, reg.host + "/pushed/target:1")
    printed = lines(daemon.docker("push", reg.host + "/pushed/target:1"))
    assert sha256(layers[0])[7:19] + ": Mounted from pushed/source" in printed
    assert reg.has_manifest("pushed/target", "1")


def test_push_is_reported_by_docker_events(reg, daemon, tmp_path):
    name = reg.host + "/pushed/event:1"
    load_unique_image(daemon, str(tmp_path), name, layer_count=1)
    since = time.time()
    daemon.docker("push", name)
    assert [event[:2] for event in image_events(daemon, since, "push")] == [("push", name)]


# ---------------------------------------------------------------------------------------------
# Login (htpasswd: Basic auth)


def test_login_with_good_credentials(basic_reg, daemon):
    result = login(daemon, basic_reg, *ALICE)
    assert result.returncode == 0, result.stderr.decode()
    assert lines(result)[-1] == "Login Succeeded"
    stored = base64.b64decode(cli_auths(daemon)[basic_reg.host]["auth"]).decode()
    assert stored == "alice:s3cret"


def test_login_with_bad_credentials_fails(basic_reg, daemon):
    result = login(daemon, basic_reg, "alice", "wrong")
    assert result.returncode != 0
    assert result.stderr.decode().strip() == (
        "Error response from daemon: login attempt to http://%s/v2/ failed with status: 401 Unauthorized"
        % basic_reg.host)
    assert basic_reg.host not in cli_auths(daemon)


def test_login_never_logs_the_password(basic_reg, start_daemon):
    daemon = start_daemon("--debug")
    login(daemon, basic_reg, *ALICE)
    login(daemon, basic_reg, "alice", "hunter2-wrong")
    assert "s3cret" not in daemon.log() and "hunter2" not in daemon.log()


def test_pull_of_a_private_repository_after_login(reg, basic_reg, daemon):
    assert login(daemon, basic_reg, *ALICE).returncode == 0
    daemon.docker("pull", basic_reg.host + "/secret/base:1")
    assert inspect(daemon, basic_reg.host + "/secret/base:1")["Id"] == sha256(reg.fixtures.base)


def test_pull_of_a_private_repository_without_login_fails(basic_reg, daemon):
    result = daemon.docker("pull", basic_reg.host + "/secret/base:1", check=False, input=b"", timeout=20)
    assert result.returncode != 0
    assert result.stderr.decode().strip() == (
        'Error response from daemon: Head "http://%s/v2/secret/base/manifests/1": no basic auth credentials'
        % basic_reg.host)


def test_push_to_a_private_registry_after_login(basic_reg, daemon, tmp_path):
    name = basic_reg.host + "/secret/pushed:1"
    load_unique_image(daemon, str(tmp_path), name, layer_count=1)
    assert login(daemon, basic_reg, *ALICE).returncode == 0
    daemon.docker("push", name)
    assert basic_reg.manifest("secret/pushed", "1", credentials=ALICE)


# ---------------------------------------------------------------------------------------------
# Login (token server: Bearer auth)


def test_token_login_stores_the_identity_token(token_reg, daemon):
    result = login(daemon, token_reg, *ALICE)
    assert lines(result)[-1] == "Login Succeeded", result.stderr.decode()
    assert cli_auths(daemon)[token_reg.host]["identitytoken"] in token_reg.tokens.refresh_tokens


def test_pull_after_token_login_trades_the_identity_token(reg, token_reg, daemon):
    assert login(daemon, token_reg, *ALICE).returncode == 0
    daemon.docker("pull", token_reg.host + "/private/base:1")
    assert inspect(daemon, token_reg.host + "/private/base:1")["Id"] == sha256(reg.fixtures.base)
    assert token_reg.tokens.requests[-1][0] == "POST"


def test_anonymous_pull_of_a_public_repository(reg, token_reg, daemon):
    daemon.docker("pull", token_reg.host + "/public/base:1")
    assert inspect(daemon, token_reg.host + "/public/base:1")["Id"] == sha256(reg.fixtures.base)


def test_anonymous_pull_of_a_private_repository_is_denied(token_reg, daemon):
    result = daemon.docker("pull", token_reg.host + "/private/base:1", check=False, input=b"", timeout=20)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        "Error response from daemon: pull access denied for %s/private/base, repository does not exist or "
        "may require 'docker login': denied: requested access to the resource is denied" % token_reg.host)


# ---------------------------------------------------------------------------------------------
# GET /distribution/{name}/json (docker-py's get_registry_data): what the registry serves


def distribution_inspect(daemon, name, credentials=None):
    headers = {}
    if credentials:
        auth = json.dumps({"username": credentials[0], "password": credentials[1]}).encode()
        headers["X-Registry-Auth"] = base64.urlsafe_b64encode(auth).decode()
    return daemon.request("GET", "/v1.41/distribution/%s/json" % name, headers=headers)


def test_distribution_inspect_describes_the_manifest_and_its_platform(reg, daemon):
    body, digest = reg.manifest("fix/two", "1")
    expected = {"Descriptor": {"mediaType": json.loads(body)["mediaType"], "digest": digest,
                               "size": len(body)},
                "Platforms": [{"architecture": "amd64", "os": "linux"}]}
    for name in ("fix/two:1", "fix/two@" + digest):
        response = distribution_inspect(daemon, reg.host + "/" + name)
        assert (response.status, response.json()) == (200, expected)
    assert out(daemon.docker("images", "-q")) == ""   # nothing was pulled


def test_distribution_inspect_of_an_index_lists_every_platform(reg, daemon):
    body, digest = reg.manifest("fix/multi", "1")
    response = distribution_inspect(daemon, reg.host + "/fix/multi:1")
    assert response.status == 200
    assert response.json() == {
        "Descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                       "size": len(body)},
        "Platforms": [{"architecture": OTHER_ARCH, "os": "linux"},
                      {"architecture": HOST_ARCH, "os": "linux"}]}


def test_distribution_inspect_keeps_the_registrys_no(reg, token_reg, daemon):
    missing_tag = distribution_inspect(daemon, reg.host + "/fix/two:nope")
    assert (missing_tag.status, missing_tag.json()["message"]) == (404, "manifest unknown: manifest unknown")
    missing_repository = distribution_inspect(daemon, reg.host + "/fix/nothing:1")
    assert missing_repository.status == 404
    anonymous = distribution_inspect(daemon, token_reg.host + "/private/base:1")
    assert (anonymous.status, anonymous.json()["message"]) == (
        403, "denied: requested access to the resource is denied")
    assert distribution_inspect(daemon, token_reg.host + "/private/base:1", ALICE).status == 200
    full_id = distribution_inspect(daemon, sha256(reg.fixtures.two)[7:])
    assert (full_id.status, full_id.json()["message"]) == (500, "no manifest found for full image ID")


# ---------------------------------------------------------------------------------------------
# Daemon options: --registry-mirror, --insecure-registry


def test_hub_name_is_pulled_from_the_mirror(reg, mirror_daemon):
    printed = lines(mirror_daemon.docker("pull", "mirrored:1"))
    assert printed[0] == "1: Pulling from library/mirrored"
    assert printed[-2:] == ["Status: Downloaded newer image for mirrored:1", "docker.io/library/mirrored:1"]
    assert inspect(mirror_daemon, "mirrored:1")["Id"] == sha256(reg.fixtures.base)


def test_hub_name_missing_from_the_mirror_falls_back_to_hub(mirror_daemon):
    started = time.monotonic()
    result = mirror_daemon.docker("pull", "not-mirrored:1", check=False)
    assert result.returncode != 0
    assert result.stderr.decode().strip() == (
        'Error response from daemon: Get "https://registry-1.docker.io/v2/": proxyconnect tcp: dial tcp '
        '127.0.0.1:%d: connect: connection refused' % mirror_daemon.closed_proxy_port)
    assert time.monotonic() - started < 10


def test_info_lists_the_mirror(reg, mirror_daemon):
    info = json.loads(out(mirror_daemon.docker("info", "--format", "{{json .RegistryConfig}}")))
    assert info["Mirrors"] == ["http://%s/" % reg.host]


def test_registry_outside_127_is_https_only_by_default(ipv6_reg, daemon):
    result = daemon.docker("pull", ipv6_reg.host + "/fix/base:1", check=False)
    assert result.returncode != 0
    assert result.stderr.decode().strip() == (
        'Error response from daemon: Get "https://%s/v2/": http: server gave HTTP response to HTTPS client'
        % ipv6_reg.host)


@pytest.mark.parametrize("how", ["name", "cidr"])
def test_insecure_registry_flag_allows_plain_http(reg, ipv6_reg, start_daemon, how):
    daemon = start_daemon("--insecure-registry", ipv6_reg.host if how == "name" else "::1/128")
    daemon.docker("pull", ipv6_reg.host + "/fix/base:1")
    assert inspect(daemon, ipv6_reg.host + "/fix/base:1")["Id"] == sha256(reg.fixtures.base)


# ---------------------------------------------------------------------------------------------
# Bad registries, bad content


def test_unknown_repository_fails_with_dockerd_wording(reg, daemon):
    result = daemon.docker("pull", reg.host + "/no/such", check=False)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        "Error response from daemon: manifest for %s/no/such:latest not found: manifest unknown: "
        "manifest unknown" % reg.host)


def test_tampered_blob_fails_verification_and_lists_no_image(reg, daemon, tmp_path):
    layers = [layer_tar({"unique": os.urandom(200000)}), layer_tar({"top": os.urandom(200000)})]
    docker_archive(str(tmp_path / "bad.tar"), layers)
    skopeo_copy("docker-archive:" + str(tmp_path / "bad.tar"), reg, "bad/layer:1")
    blob = manifest_layers(reg, "bad/layer", "1")[1]["digest"]
    with open(reg.blob_path(blob), "r+b") as tampered:
        tampered.seek(100)
        byte = tampered.read(1)
        tampered.seek(100)
        tampered.write(bytes([byte[0] ^ 0xFF]))
    result = daemon.docker("pull", reg.host + "/bad/layer:1", check=False)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "filesystem layer verification failed for digest " + blob
    assert out(daemon.docker("images", "-a", "-q")) == ""


def test_registry_that_is_down_fails_fast(daemon):
    port = free_port()
    started = time.monotonic()
    result = daemon.docker("pull", "127.0.0.1:%d/any/thing:1" % port, check=False)
    assert time.monotonic() - started < 5
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        'Error response from daemon: Get "http://127.0.0.1:%d/v2/": dial tcp 127.0.0.1:%d: connect: '
        'connection refused' % (port, port))


# ---------------------------------------------------------------------------------------------
# docker run of an image that is not here yet: create answers 404, the CLI pulls, then runs


def test_run_of_an_unpulled_image_pulls_it_first(reg, mirror_daemon, tmp_path):
    rootfs = build_busybox_rootfs(str(tmp_path / "rootfs"))
    archive = write_docker_archive(rootfs, str(tmp_path / "runnable.tar"), "runnable:1")
    skopeo_copy("docker-archive:" + archive, reg, "library/runnable:1")
    result = mirror_daemon.docker("run", "--rm", "--network", "none", "runnable:1", "echo", "ran")
    assert out(result) == "ran"
    assert "Unable to find image 'runnable:1' locally" in result.stderr.decode()
    assert "Status: Downloaded newer image for runnable:1" in result.stderr.decode()
