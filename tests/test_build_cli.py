"""`docker build` with the legacy builder, and commit/diff/export, end to end (issue 13).

The real CLI with DOCKER_BUILDKIT=0 against a pydockerd that has busybox (one daemon for the
module; its containers are removed after each test). The daemon runs with `-b none`, so RUN
steps have no network, which these Dockerfiles do not need. A few tests speak the API
directly, to show what the daemon itself does with a context the CLI would have cleaned up.
"""
import http.server
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import threading
import time
import uuid

import pytest

from conftest import DOCKER
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import err, host_daemon_env, out, wait_for
from registry_fixtures import Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds run containers: root needed")

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
LAST_MODIFIED_UNIX = 1445412480


def build(daemon, context, *args, check=True, timeout=120):
    """`DOCKER_BUILDKIT=0 docker build ARGS... CONTEXT` (the legacy builder)."""
    env = dict(host_daemon_env(daemon), DOCKER_BUILDKIT="0")
    result = subprocess.run([DOCKER, "build"] + list(args) + [str(context)], env=env, timeout=timeout,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and result.returncode != 0:
        raise AssertionError("docker build failed (%d): %s\n%s\ndaemon log:\n%s" % (
            result.returncode, out(result), err(result), daemon.log()[-3000:]))
    return result


def make_context(directory, dockerfile, **files):
    """A context directory: the Dockerfile and `files` (name -> text; dirs made)."""
    os.makedirs(str(directory), exist_ok=True)
    for name, text in dict(files, Dockerfile=dockerfile).items():
        path = os.path.join(str(directory), name.replace("__", "/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
    return directory


def context_tar(files):
    """A context tar as a client that does not filter .dockerignore would send it."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return data.getvalue()


def api_build(daemon, body, query="", timeout=60):
    """POST /build with a raw body; returns (status, [messages] or the error body)."""
    response = daemon.request("POST", "/v1.41/build?version=1" + query, body=body,
                              headers={"Content-Type": "application/x-tar"}, timeout=timeout)
    if response.status != 200:
        return response.status, response.json()
    return 200, [json.loads(line) for line in response.body.decode().splitlines() if line.strip()]


def run_in(daemon, image, *command):
    return out(daemon.docker("run", "--rm", "--network", "none", image, *command))


def image_inspect(daemon, name):
    response = daemon.request("GET", "/images/%s/json" % name)
    assert response.status == 200, response.body
    return response.json()


def history(daemon, name):
    return [entry["CreatedBy"] for entry in daemon.request("GET", "/images/%s/history" % name).json()]


def state_of(daemon):
    """What a failed build must not leave behind: containers, images, layers, temp dirs."""
    containers = daemon.request("GET", "/containers/json?all=1").json()
    images = daemon.request("GET", "/images/json?all=1").json()
    layers = os.listdir(os.path.join(daemon.root, "graph", "layerdb", "sha256"))
    mounts = os.listdir(os.path.join(daemon.root, "graph", "layerdb", "mounts"))
    return (len(containers) + len(mounts), sorted(image["Id"] for image in images), sorted(layers),
            sorted(os.listdir(os.path.join(daemon.root, "tmp"))))


# -- building and running --------------------------------------------------------------------

def test_single_stage_build_runs_the_result(daemon, tmp_path):
    context = make_context(tmp_path, 'FROM busybox\nRUN echo hi > /x\nCMD ["cat","/x"]\n', **{"other.txt": "x"})
    since = time.time()
    result = build(daemon, context, "--network", "none", "-t", "built:1")
    text = out(result)
    assert "Step 1/3 : FROM busybox" in text and "Step 3/3 : CMD [\"cat\",\"/x\"]" in text
    assert " ---> Running in " in text and "Removing intermediate container " in text
    assert "Successfully built " in text and "Successfully tagged built:1" in text
    assert run_in(daemon, "built:1") == "hi"
    assert history(daemon, "built:1")[:2] == ['/bin/sh -c #(nop)  CMD ["cat" "/x"]', "/bin/sh -c echo hi > /x"]
    assert daemon.request("GET", "/containers/json?all=1").json() == [], "intermediate container left"
    events = out(daemon.docker("events", "--since", "%.3f" % since, "--until", "%.3f" % time.time(),
                               "--filter", "type=container", "--format", "{{.Action}}"))
    assert events.split()[:4] == ["create", "start", "die", "destroy"]


def test_run_steps_ignore_the_entrypoint_and_use_user_workdir_and_shell(daemon, tmp_path):
    dockerfile = ('FROM busybox\nENTRYPOINT ["false"]\nUSER nobody\nWORKDIR /tmp\n'
                  'SHELL ["/bin/sh", "-ec"]\nRUN id -u > mine; pwd >> mine\n')
    image = out(build(daemon, make_context(tmp_path, dockerfile), "-q"))
    assert daemon.docker("run", "--rm", "--network", "none", "--entrypoint", "cat", image,
                         "/tmp/mine").stdout.decode().split() == ["65534", "/tmp"]
    assert history(daemon, image)[0] == "/bin/sh -ec id -u > mine; pwd >> mine"


def test_the_stream_is_dockerds_json(daemon):
    status, messages = api_build(daemon, context_tar({"Dockerfile": "FROM busybox\nLABEL a=b\n"}), "&t=wire:1")
    assert status == 200
    streams = [message.get("stream") for message in messages]
    assert streams[:3] == ["Step 1/2 : FROM busybox", "\n", " ---> %s\n" % image_inspect(daemon, "busybox")["Id"][7:19]]
    built = image_inspect(daemon, "wire:1")["Id"]
    assert {"aux": {"ID": built}} in messages
    assert streams[-2:] == ["Successfully built %s\n" % built[7:19], "Successfully tagged wire:1\n"]


def test_quiet_build_prints_only_the_image_id(daemon, tmp_path):
    result = build(daemon, make_context(tmp_path, "FROM busybox\nENV QUIET=1\n"), "-q")
    assert out(result) == image_inspect(daemon, out(result))["Id"]


def test_rebuild_uses_the_cache_and_a_changed_file_misses(daemon, tmp_path):
    context = make_context(tmp_path, "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n",
                           **{"a.txt": "one"})
    first = out(build(daemon, context, "-q"))
    again = build(daemon, context)
    assert out(again).count(" ---> Using cache") == 2 and "Running in" not in out(again)
    assert out(build(daemon, context, "-q")) == first
    with open(os.path.join(str(tmp_path), "a.txt"), "w") as handle:
        handle.write("two")
    changed = build(daemon, context)
    assert "Using cache" not in out(changed) and "Running in" in out(changed)
    changed_id = out(build(daemon, context, "-q"))
    assert changed_id != first and run_in(daemon, changed_id, "cat", "/b.txt") == "two"
    assert "Using cache" not in out(build(daemon, context, "--no-cache"))


def test_cache_from_matches_an_image_without_parent_links(daemon, tmp_path):
    context = make_context(tmp_path, "FROM busybox\nRUN echo cached > /c\nENV STEP=2\n")
    original = out(build(daemon, context, "-q", "-t", "cachefrom:1"))
    saved = str(tmp_path / "saved.tar")
    daemon.docker("save", "-o", saved, "cachefrom:1")
    daemon.docker("rmi", "cachefrom:1")  # the image and its intermediate parents go
    daemon.docker("load", "-i", saved)   # back, but with no parent links to match on
    assert "Using cache" not in out(build(daemon, context, "--no-cache"))
    result = build(daemon, context, "--cache-from", "cachefrom:1")
    assert out(result).count("Using cache") == 2
    assert "Successfully built %s" % original[7:19] in out(result)


def test_multi_stage_copy_from_skips_unused_stages_and_honours_target(daemon, tmp_path):
    dockerfile = ("FROM busybox AS build\nRUN echo made > /out\n"
                  "FROM busybox AS broken\nRUN exit 9\n"
                  "FROM busybox\nCOPY --from=build /out /copied\nCMD [\"cat\", \"/copied\"]\n")
    context = make_context(tmp_path, dockerfile)
    result = build(daemon, context, "-t", "multi:1")
    assert "exit 9" not in out(result), "a stage nothing needs was built"
    assert run_in(daemon, "multi:1") == "made"
    assert run_in(daemon, out(build(daemon, context, "-q", "--target", "build")), "cat", "/out") == "made"
    missing = build(daemon, context, "--target", "nope", check=False)
    assert missing.returncode != 0 and "failed to reach build target nope in Dockerfile" in err(missing)


def test_copy_from_an_image_and_by_stage_index(daemon, tmp_path):
    dockerfile = ("FROM busybox\nRUN echo zero > /zero\n"
                  "FROM scratch\nCOPY --from=busybox /bin/busybox /bin/\nCOPY --from=0 /zero /zero\n"
                  'ENTRYPOINT ["/bin/busybox"]\n')
    image = out(build(daemon, make_context(tmp_path, dockerfile), "-q"))
    assert run_in(daemon, image, "cat", "/zero") == "zero"


def test_from_pulls_a_missing_image_and_pull_asks_again(daemon, tmp_path):
    server = Registry(str(tmp_path / "registry")).start()
    try:
        ref = "%s/pulled:1" % server.host
        daemon.docker("tag", "busybox", ref)
        daemon.docker("push", ref)
        daemon.docker("rmi", ref)
        context = make_context(tmp_path / "context", "FROM %s\nRUN true\n" % ref)
        assert "Pulling from pulled" in out(build(daemon, context))
        assert image_inspect(daemon, ref)["Id"] == image_inspect(daemon, "busybox")["Id"]
        assert "Image is up to date for %s" % ref in out(build(daemon, context, "--pull"))
    finally:
        server.stop()


# -- COPY, ADD and the context -----------------------------------------------------------------

def test_copy_wildcards_directories_workdir_and_chown(daemon, tmp_path):
    dockerfile = ("FROM busybox\nWORKDIR /app\nCOPY *.txt ./\nCOPY dir /tree\n"
                  "COPY --chown=nobody:nogroup one.txt /owned/\n")
    context = make_context(tmp_path, dockerfile, **{"one.txt": "1", "two.txt": "2", "skip.md": "m",
                                                     "dir__sub__leaf": "leaf"})
    image = out(build(daemon, context, "-q"))
    assert run_in(daemon, image, "ls", "/app") == "one.txt\ntwo.txt"
    assert run_in(daemon, image, "cat", "/tree/sub/leaf") == "leaf"  # a directory's contents
    assert run_in(daemon, image, "stat", "-c", "%u:%g", "/owned/one.txt", "/app/one.txt") == "65534:65534\n0:0"


def test_dockerignore_is_applied_by_the_daemon(daemon):
    files = {"Dockerfile": "FROM busybox\nCOPY . /ctx/\n", ".dockerignore": "*.log\nsecret*\nlogs\n!logs/keep\n",
             "a.log": "x", "secret.key": "x", "keep.txt": "x", "logs/drop": "x", "logs/keep": "x"}
    status, messages = api_build(daemon, context_tar(files), "&t=ignored:1")
    assert status == 200, messages
    assert sorted(run_in(daemon, "ignored:1", "find", "/ctx", "-type", "f").split()) == \
        ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/keep.txt", "/ctx/logs/keep"]


def test_add_unpacks_a_local_tar_and_dates_a_download(daemon, tmp_path):
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as tar:
        info = tarfile.TarInfo("d/inside")
        info.size, info.uid = 2, 1234
        tar.addfile(info, io.BytesIO(b"in"))
    make_context(tmp_path, "")
    with open(os.path.join(str(tmp_path), "payload.tar.gz"), "wb") as handle:
        handle.write(payload.getvalue())
    server, port = serve_file(b"downloaded\n")
    try:
        dockerfile = "FROM busybox\nADD payload.tar.gz /opt/\nADD http://127.0.0.1:%d/file.txt /dl/\n" % port
        make_context(tmp_path, dockerfile)
        image = out(build(daemon, tmp_path, "-q"))
    finally:
        server.shutdown()
    assert run_in(daemon, image, "cat", "/opt/d/inside") == "in"
    assert run_in(daemon, image, "stat", "-c", "%u", "/opt/d/inside") == "1234"  # the tar's owner
    assert run_in(daemon, image, "stat", "-c", "%Y %a %s", "/dl/file.txt") == \
        "%d 600 11" % LAST_MODIFIED_UNIX


def serve_file(data):
    """A loopback HTTP server answering every GET with `data` and a Last-Modified date."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_a_compressed_context_and_remote_contexts(daemon, tmp_path):
    context = make_context(tmp_path, "FROM busybox\nCOPY f /f\n", f="compressed")
    assert run_in(daemon, out(build(daemon, context, "-q", "--compress")), "cat", "/f") == "compressed"
    tar = context_tar({"Dockerfile": "FROM busybox\nCOPY f /f\n", "f": "remote tar"})
    for body, expected in ((tar, "remote tar"), (b"FROM busybox\nLABEL remote=dockerfile\n", None)):
        server, port = serve_file(body)
        try:
            status, messages = api_build(daemon, b"", "&remote=http://127.0.0.1:%d/context" % port)
        finally:
            server.shutdown()
        assert status == 200, messages
        image = [message["aux"]["ID"] for message in messages if "aux" in message][-1]
        if expected:
            assert run_in(daemon, image, "cat", "/f") == expected
        else:
            assert image_inspect(daemon, image)["Config"]["Labels"] == {"remote": "dockerfile"}
    status, answer = api_build(daemon, b"", "&remote=git://example.invalid/repo.git")
    assert status == 400 and "git build contexts" in answer["message"]


def test_docker_py_and_compose_build_and_tag(daemon, tmp_path):
    docker_py = pytest.importorskip("docker")
    context = make_context(tmp_path, "FROM busybox\nARG A\nRUN echo $A > /a\n")
    client = docker_py.DockerClient(base_url=daemon.host)
    image, messages = client.images.build(path=str(context), tag="sdk:1", buildargs={"A": "sdk"},
                                          network_mode="none")
    assert image.tags == ["sdk:1"] and {"aux": {"ID": image.id}} in list(messages)
    assert run_in(daemon, "sdk:1", "cat", "/a") == "sdk"
    if not shutil.which("docker-compose"):
        return
    with open(os.path.join(str(context), "docker-compose.yml"), "w") as compose:
        compose.write('version: "3"\nservices:\n  app:\n    build:\n      context: .\n'
                      '      network: none\n      args:\n        A: sdk\n    image: composed:1\n')
    result = subprocess.run(["docker-compose", "build"], cwd=str(context), env=host_daemon_env(daemon),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == 0, err(result)
    assert image_inspect(daemon, "composed:1")["Id"] == image.id  # every step came from the cache


def test_escapes_out_of_the_context_and_the_image_are_refused(daemon, tmp_path):
    context = make_context(tmp_path, "FROM busybox\nCOPY evil /x\n")
    os.symlink("/etc/passwd", os.path.join(str(tmp_path), "evil"))
    result = build(daemon, context, check=False)
    assert result.returncode == 1
    assert "COPY failed: file not found in build context or excluded by .dockerignore: stat evil: " \
           "file does not exist" in out(result) + err(result)
    make_context(tmp_path, "FROM busybox\nCOPY ../x /x\n")
    result = build(daemon, context, check=False)
    assert "COPY failed: forbidden path outside the build context: ../x ()" in out(result) + err(result)
    marker = "pyd-build-escape-%s" % uuid.uuid4().hex[:8]
    make_context(tmp_path, "FROM busybox\nRUN ln -s / /escape\nCOPY a /escape/tmp/%s\n" % marker, a="a")
    os.unlink(os.path.join(str(tmp_path), "evil"))
    image = out(build(daemon, context, "-q"))
    assert not os.path.exists("/tmp/" + marker), "COPY followed an image's symlink onto the host"
    assert run_in(daemon, image, "cat", "/tmp/" + marker) == "a"


# -- build args, ONBUILD, the config --------------------------------------------------------------

def test_build_args_reach_run_and_proxy_args_stay_out_of_the_image(daemon, tmp_path):
    dockerfile = ("ARG TAG=latest\nFROM busybox:$TAG\nARG WHO=world\nARG HTTP_PROXY\n"
                  'RUN echo "$WHO $HTTP_PROXY $https_proxy" > /greeting\n')
    context = make_context(tmp_path, dockerfile)
    result = build(daemon, context, "-t", "args:1", "--build-arg", "WHO=you", "--build-arg",
                   "HTTP_PROXY=http://declared:1", "--build-arg", "https_proxy=http://secret:2",
                   "--build-arg", "UNUSED=1")
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out(result)
    assert run_in(daemon, "args:1", "cat", "/greeting") == "you http://declared:1 http://secret:2"
    created_by = history(daemon, "args:1")[0]
    assert created_by.startswith("|2 HTTP_PROXY=http://declared:1 WHO=you /bin/sh -c echo")
    assert "secret" not in json.dumps(image_inspect(daemon, "args:1")) + json.dumps(history(daemon, "args:1"))
    assert "WHO=you" not in image_inspect(daemon, "args:1")["Config"]["Env"]
    assert run_in(daemon, out(build(daemon, context, "-q")), "cat", "/greeting") == "world"  # no args given


def test_onbuild_triggers_fire_in_the_child_build(daemon, tmp_path):
    make_context(tmp_path / "parent", "FROM busybox\nONBUILD RUN echo triggered > /trigger\n")
    build(daemon, tmp_path / "parent", "-t", "onbuild-parent:1")
    assert image_inspect(daemon, "onbuild-parent:1")["Config"]["OnBuild"] == ["RUN echo triggered > /trigger"]
    make_context(tmp_path / "child", "FROM onbuild-parent:1\nCMD [\"cat\", \"/trigger\"]\n")
    result = build(daemon, tmp_path / "child", "-t", "onbuild-child:1")
    assert "# Executing 1 build trigger" in out(result)
    assert run_in(daemon, "onbuild-child:1") == "triggered"
    assert image_inspect(daemon, "onbuild-child:1")["Config"]["OnBuild"] is None


CONFIG_DOCKERFILE = """FROM busybox
MAINTAINER someone <someone@example.com>
ENV A=1 B="two words"
LABEL version="1.0" maintainer.name=me
EXPOSE 80 53/udp
VOLUME ["/data", "/logs"]
USER nobody
WORKDIR /app
WORKDIR sub
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5m --timeout=3s --retries=2 CMD wget -q localhost || exit 1
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo hi
SHELL ["/bin/sh", "-ec"]
"""


def test_image_config_is_what_dockerds_legacy_builder_makes(daemon, tmp_path):
    """The expected values are dockerd 20.10's for this Dockerfile (legacy builder)."""
    build(daemon, make_context(tmp_path, CONFIG_DOCKERFILE), "-t", "config:1")
    config = image_inspect(daemon, "config:1")["Config"]
    assert image_inspect(daemon, "config:1")["Author"] == "someone <someone@example.com>"
    assert config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                             "A=1", "B=two words"]
    assert config["Labels"] == {"version": "1.0", "maintainer.name": "me"}
    assert config["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}}
    assert config["Volumes"] == {"/data": {}, "/logs": {}}
    assert (config["User"], config["WorkingDir"], config["StopSignal"]) == ("nobody", "/app/sub", "SIGINT")
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
                                     "Interval": 300000000000, "Timeout": 3000000000, "Retries": 2}
    assert config["Entrypoint"] == ["/bin/sh", "-c"] and config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert config["Shell"] == ["/bin/sh", "-ec"] and config["OnBuild"] is None
    created_by = history(daemon, "config:1")
    assert created_by[:13] == [
        "/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]",
        '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo hi"]',
        '/bin/sh -c #(nop)  ENTRYPOINT ["/bin/sh" "-c"]',
        '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "wget -q localhost || exit 1"] "5m0s" "3s" "0s" \'\\x02\'}',
        "/bin/sh -c #(nop)  STOPSIGNAL SIGINT",
        "/bin/sh -c #(nop) WORKDIR /app/sub",
        "/bin/sh -c #(nop) WORKDIR /app",
        "/bin/sh -c #(nop)  USER nobody",
        "/bin/sh -c #(nop)  VOLUME [/data /logs]",
        "/bin/sh -c #(nop)  EXPOSE 53/udp 80",
        "/bin/sh -c #(nop)  LABEL version=1.0 maintainer.name=me",
        "/bin/sh -c #(nop)  ENV A=1 B=two words",
        "/bin/sh -c #(nop)  MAINTAINER someone <someone@example.com>",
    ]
    parent = daemon.request("GET", "/images/config:1/history").json()[1]["Id"]
    assert config["Image"] == parent  # dockerd records the step's parent here


def test_run_steps_get_the_builds_host_options(daemon, tmp_path):
    context = make_context(tmp_path, "FROM --platform=linux/%s busybox\nRUN grep myhost /etc/hosts > /hosts "
                           "&& df -k /dev/shm | tail -1 > /shm\n" % platform_arch())
    image = out(build(daemon, context, "-q", "--add-host", "myhost:10.1.2.3", "--shm-size", "16m"))
    assert run_in(daemon, image, "cat", "/hosts").split() == ["10.1.2.3", "myhost"]
    assert run_in(daemon, image, "cat", "/shm").split()[1] == "16384"


def platform_arch():
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def test_labels_from_the_command_line_are_steps_of_the_last_stage(daemon, tmp_path):
    image = out(build(daemon, make_context(tmp_path, "FROM busybox\n"), "-q", "--label", "b=2", "--label", "a=1"))
    assert image_inspect(daemon, image)["Config"]["Labels"] == {"a": "1", "b": "2"}
    assert history(daemon, image)[:2] == ["/bin/sh -c #(nop)  LABEL b=2", "/bin/sh -c #(nop)  LABEL a=1"]


# -- failures ------------------------------------------------------------------------------------

def test_a_failing_run_ends_the_build_with_its_exit_code(daemon, tmp_path):
    context = make_context(tmp_path, "FROM busybox\nRUN echo before; echo oops >&2; exit 3\n")
    result = build(daemon, context, check=False)
    assert result.returncode == 3
    assert "The command '/bin/sh -c echo before; echo oops >&2; exit 3' returned a non-zero code: 3" in err(result)
    assert "before" in out(result) and "oops" in out(result)
    kept = daemon.request("GET", "/containers/json?all=1").json()
    assert [container["State"] for container in kept] == ["exited"], "dockerd keeps the failed step's container"
    daemon.docker("rm", kept[0]["Id"])
    result = build(daemon, context, "--force-rm", check=False)
    assert result.returncode == 3 and "Removing intermediate container" in out(result)
    assert daemon.request("GET", "/containers/json?all=1").json() == []


@pytest.mark.parametrize("files, query, message", [
    ({"Dockerfile": "FROM busybox\nFOOBAR baz\n"}, "", "dockerfile parse error line 2: unknown instruction: FOOBAR"),
    ({"Dockerfile": "RUN true\n"}, "", "no build stage in current context"),
    ({"Dockerfile": "FROM busybox\nRUN cat <<EOF\nx\nEOF\n"}, "", "heredocs (<<EOF) need BuildKit"),
    ({"Dockerfile": ""}, "", "the Dockerfile (Dockerfile) cannot be empty"),
    ({"Dockerfile": "FROM busybox\n"}, "&dockerfile=elsewhere", "Cannot locate specified Dockerfile: elsewhere"),
    (None, "", "unexpected EOF"),
    ({"Dockerfile": "ARG IMG\nFROM $IMG\n"}, "", "base name ($IMG) should not be blank"),
    ({"Dockerfile": "ARG ONLY=1\n"}, "", "No image was generated. Is your Dockerfile empty?"),
    ({"Dockerfile": "FROM busybox\nRUN true\nCOPY nothere /x\n"}, "", "COPY failed: file not found"),
    ({"Dockerfile": "FROM busybox\nCOPY --chown=nosuchuser Dockerfile /x\n"}, "",
     "unable to convert uid/gid chown string to host mapping: can't find uid for user nosuchuser: "
     "no such user: nosuchuser"),
    ({"Dockerfile": "FROM --platform=linux/s390x busybox\n"}, "", "cannot run on this"),
])
def test_bad_input_leaves_nothing_behind(daemon, files, query, message):
    before = state_of(daemon)
    body = context_tar(files) if files is not None else b"this is not a tar"
    status, answer = api_build(daemon, body, query)
    text = json.dumps(answer)
    assert message in (answer.get("message", "") if status != 200 else text), (status, answer)
    after = state_of(daemon)
    assert after[0] == 0 and after[3] == [], "a container, a writable layer or a temporary directory was left"
    if "COPY failed" not in message:  # a step that succeeded before the failure keeps its image
        assert after == before


def test_squash_and_buildkit_only_options_are_refused(daemon):
    status, answer = api_build(daemon, context_tar({"Dockerfile": "FROM busybox\n"}), "&squash=1")
    assert (status, answer["message"]) == (400, "squash is only supported with experimental mode")


def test_run_steps_get_the_builds_memory_limit(daemon):
    dockerfile = "FROM busybox\nRUN cat /sys/fs/cgroup/memory/memory.limit_in_bytes\n"
    status, answer = api_build(daemon, context_tar({"Dockerfile": dockerfile}), "&memory=67108864")
    assert status == 200 and "67108864" in json.dumps(answer), answer


def test_a_client_that_disconnects_cancels_the_build(daemon, tmp_path):
    context = make_context(tmp_path, "FROM busybox\nRUN sleep 30\n")
    env = dict(host_daemon_env(daemon), DOCKER_BUILDKIT="0")
    client = subprocess.Popen([DOCKER, "build", str(context)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: daemon.request("GET", "/containers/json").json(), what="the RUN step to start")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    wait_for(lambda: not daemon.request("GET", "/containers/json?all=1").json()
             and not os.listdir(os.path.join(daemon.root, "tmp")), what="the build to clean up")


# -- the build cache in df and prune -----------------------------------------------------------------

def test_system_df_reports_and_builder_prune_removes_a_stale_build_directory(daemon):
    stale = os.path.join(daemon.root, "tmp", "docker-builder-stale")
    os.makedirs(stale)
    with open(os.path.join(stale, "context-file"), "w") as handle:
        handle.write("x" * 1000)
    usage = daemon.request("GET", "/system/df").json()
    assert [(record["ID"], record["InUse"], record["Size"]) for record in usage["BuildCache"]] == \
        [("docker-builder-stale", False, 1000)]
    assert usage["BuilderSize"] == 1000
    pruned = daemon.request("POST", "/build/prune").json()
    assert pruned == {"CachesDeleted": ["docker-builder-stale"], "SpaceReclaimed": 1000}
    assert not os.path.exists(stale)
    assert "Total reclaimed space: 0B" in out(daemon.docker("builder", "prune", "-f"))
    assert daemon.request("GET", "/system/df").json()["BuildCache"] is None  # as dockerd without any


# -- commit, diff, export --------------------------------------------------------------------------

def test_diff_commit_and_export_with_the_cli(daemon, tmp_path):
    daemon.docker("run", "--network", "none", "--name", "changed", "busybox",
                  "sh", "-c", "echo x > /tmp/new; rm /bin/vi; mkdir /srv")
    assert out(daemon.docker("diff", "changed")).splitlines() == \
        ["C /bin", "D /bin/vi", "A /srv", "C /tmp", "A /tmp/new"]
    image_id = out(daemon.docker("commit", "-m", "a message", "-a", "an author", "-c", 'CMD ["cat","/tmp/new"]',
                                 "-c", "ENV A=1", "changed", "committed:1"))
    assert run_in(daemon, "committed:1") == "x"
    inspected = image_inspect(daemon, "committed:1")
    assert inspected["Id"] == image_id and inspected["Parent"] == image_inspect(daemon, "busybox")["Id"]
    assert (inspected["Author"], inspected["Comment"]) == ("an author", "a message")
    assert inspected["Config"]["Env"][-1] == "A=1" and inspected["Config"]["Cmd"] == ["cat", "/tmp/new"]
    assert history(daemon, "committed:1")[0] == "sh -c echo x > /tmp/new; rm /bin/vi; mkdir /srv"
    exported = str(tmp_path / "export.tar")
    daemon.docker("export", "-o", exported, "changed")
    with tarfile.open(exported) as tar:
        names = set(tar.getnames())
    assert "tmp/new" in names and "srv" in names and "bin/sh" in names and "bin/vi" not in names


def test_commit_of_a_running_container_pauses_it_meanwhile(daemon):
    daemon.docker("run", "-d", "--network", "none", "--name", "running", "busybox", "sleep", "30")
    since = str(time.time())
    assert out(daemon.docker("commit", "running")).startswith("sha256:")
    assert out(daemon.docker("inspect", "-f", "{{.State.Status}}", "running")) == "running"
    events = out(daemon.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                               "--filter", "container=running", "--format", "{{.Action}}"))
    assert events.split() == ["pause", "commit", "unpause"]  # dockerd's order
    assert out(daemon.docker("commit", "--pause=false", "running")).startswith("sha256:")
    gone = daemon.docker("commit", "no-such-container", check=False)
    assert "No such container: no-such-container" in err(gone)
