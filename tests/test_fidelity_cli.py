"""What real clients found wrong (issue 9), each checked the way a client sees it.

The docker CLI where it shows the behaviour, raw HTTP where it hides it (an exec started with
another Tty than it was created with, an attach that asks for the log only, the load of
something that is no archive). One daemon for the module, as in test_containers_cli.py.
"""
import json
import os
import time

import pytest

from conftest import build_busybox_rootfs
# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import err, inspect, out, run_detached, wait_for, write_docker_archive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


# -- 1. rmi and prune never delete an image a container uses --------------------------------

@pytest.fixture
def own_image(daemon, tmp_path):  # noqa: F811
    """bb:1, an image of its own (busybox's layer, another config: `sleep 30`), the only
    reference to it; removed again afterwards."""
    rootfs = build_busybox_rootfs(str(tmp_path / "rootfs"))
    archive = write_docker_archive(rootfs, str(tmp_path / "bb.tar"), "bb:1", cmd=("sleep", "30"))
    daemon.docker("load", "-i", archive)
    image_id = out(daemon.docker("image", "inspect", "--format", "{{.Id}}", "bb:1"))
    yield image_id
    daemon.docker("rmi", "-f", image_id, check=False)


def test_rmi_refuses_to_untag_an_image_a_container_uses(daemon, own_image):
    cid = out(daemon.docker("create", "--name", "c1", "--network", "none", "bb:1", "true"))
    result = daemon.docker("rmi", "bb:1", check=False)
    assert result.returncode == 1
    assert err(result) == (
        'Error response from daemon: conflict: unable to remove repository reference "bb:1" '
        '(must force) - container %s is using its referenced image %s' % (cid[:12], own_image[7:19]))
    daemon.docker("create", "--name", "keeper", "--network", "none", "busybox", "true")
    daemon.docker("image", "prune", "-a", "-f")   # keeps every image in use: busybox too
    assert out(daemon.docker("images", "-q", "bb:1")) == own_image[7:19]
    assert inspect(daemon, "c1")["Image"] == own_image


def test_rmi_force_cannot_delete_an_image_a_running_container_uses(daemon, own_image):
    cid = run_detached(daemon, "bb:1")
    result = daemon.docker("rmi", "-f", own_image, check=False)
    assert result.returncode == 1
    assert err(result) == ("Error response from daemon: conflict: unable to delete %s (cannot be "
                           "forced) - image is being used by running container %s"
                           % (own_image[7:19], cid[:12]))
    assert out(daemon.docker("images", "-q", "bb:1")) == own_image[7:19]


def test_rmi_force_with_a_stopped_container_leaves_the_container_whole(daemon, own_image):
    daemon.docker("create", "--name", "c1", "--network", "none", "bb:1", "echo", "still here")
    removed = out(daemon.docker("rmi", "-f", "bb:1")).splitlines()
    assert removed[0] == "Untagged: bb:1"   # dockerd: a stopped container is a soft conflict
    listed = out(daemon.docker("ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"))
    assert listed.startswith("c1 ")
    assert out(daemon.docker("start", "-a", "c1")) == "still here"


# -- 2. listing never validates a container's mounts ----------------------------------------

def test_ps_and_system_df_survive_a_bind_source_that_is_gone(daemon, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    daemon.docker("create", "--name", "m1", "--network", "none", "--mount", "type=bind,source=%s,target=/x" % source,
                  "busybox", "true")
    source.rmdir()
    assert out(daemon.docker("ps", "-a", "--format", "{{.Names}}")) == "m1"
    daemon.docker("system", "df")
    assert inspect(daemon, "m1")["Mounts"][0]["Source"] == str(source)
    result = daemon.docker("start", "m1", check=False)
    assert result.returncode == 1
    assert err(result).splitlines()[0] == ('Error response from daemon: invalid mount config for type "bind": bind '
                           'source path does not exist: %s' % source)


# -- 3. docker kill returns once the container is dead --------------------------------------

def test_kill_returns_once_the_process_is_gone(daemon):
    for attempt in range(3):
        name = "k%d" % attempt
        run_detached(daemon, "--name", name, "busybox", "sleep", "60")
        assert daemon.request("POST", "/containers/%s/kill" % name).status == 204
        state = inspect(daemon, name)["State"]
        assert (state["Running"], state["ExitCode"], state["Status"]) == (False, 137, "exited")
        assert daemon.request("DELETE", "/containers/%s" % name).status == 204


# -- 4. wait returns at the first exit, whatever the restart policy -------------------------

def test_wait_returns_at_the_first_exit_under_restart_always(daemon):
    run_detached(daemon, "--name", "r1", "--restart", "always", "busybox", "sh", "-c",
                 "sleep 1; exit 3")
    started = time.monotonic()
    assert out(daemon.docker("wait", "r1", timeout=20)) == "3"
    assert time.monotonic() - started < 15
    wait_for(lambda: inspect(daemon, "r1")["RestartCount"] >= 1, what="the restart")


def test_wait_next_exit_of_a_container_that_restarts(daemon):
    run_detached(daemon, "--name", "n1", "--restart", "always", "busybox", "sh", "-c",
                 "sleep 1; exit 4")
    response = daemon.request("POST", "/containers/n1/wait?condition=next-exit", timeout=20)
    assert json.loads(response.body) == {"Error": None, "StatusCode": 4}
