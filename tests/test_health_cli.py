"""HEALTHCHECK end to end: probes run as execs of the container, State.Health, health_status
events, `(healthy)` in `docker ps` and its health filter, the --health-* flags and
--no-healthcheck (dockerd 20.10's daemon/health.go). One daemon for the module."""
import json
import os
import time

import pytest

from conftest import build_busybox_rootfs
# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import api_create, inspect, out, run_detached, wait_for, write_docker_archive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

MS = 10 ** 6


def health(daemon, name):
    return inspect(daemon, name)["State"].get("Health")


def health_is(daemon, name, status):
    state = health(daemon, name)
    return state if state and state["Status"] == status else None


def ps_status(daemon, name):
    return out(daemon.docker("ps", "--filter", "name=^/%s$" % name, "--format", "{{.Status}}"))


def test_health_cmd_goes_unhealthy_then_healthy_and_says_so(daemon):
    since = time.time()
    run_detached(daemon, "--name", "h1", "--health-cmd", "test -f /tmp/ok", "--health-interval",
                 "200ms", "--health-retries", "2", "busybox", "sh", "-c",
                 "sleep 2; touch /tmp/ok; sleep 60")
    assert ps_status(daemon, "h1").endswith("(health: starting)")
    unhealthy = wait_for(lambda: health_is(daemon, "h1", "unhealthy"), what="unhealthy")
    assert unhealthy["FailingStreak"] >= 2 and unhealthy["Log"][-1]["ExitCode"] == 1
    healthy = wait_for(lambda: health_is(daemon, "h1", "healthy"), what="healthy")
    assert healthy["FailingStreak"] == 0 and healthy["Log"][-1]["ExitCode"] == 0
    assert 1 <= len(healthy["Log"]) <= 5
    assert ps_status(daemon, "h1").endswith("(healthy)")
    assert out(daemon.docker("ps", "--filter", "health=healthy", "--format", "{{.Names}}")) == "h1"
    events = daemon.docker("events", "--since", "%.9f" % since, "--until", "%.9f" % time.time(),
                           "--filter", "event=health_status", "--format", "{{.Action}}")
    assert out(events).splitlines() == ["health_status: unhealthy", "health_status: healthy"]


@pytest.fixture
def failing_image(daemon, tmp_path):  # noqa: F811
    """hc:1, whose HEALTHCHECK always fails (exit 3) after printing, every 200 ms."""
    rootfs = build_busybox_rootfs(str(tmp_path / "rootfs"))
    archive = write_docker_archive(rootfs, str(tmp_path / "hc.tar"), "hc:1", cmd=("sleep", "60"),
                                   healthcheck={"Test": ["CMD-SHELL", "echo probe-out; exit 3"],
                                                "Interval": 200 * MS, "Retries": 1})
    daemon.docker("load", "-i", archive)
    yield "hc:1"
    daemon.docker("rmi", "-f", "hc:1", check=False)


def test_image_healthcheck_keeps_the_last_five_probes(daemon, failing_image):
    run_detached(daemon, "--name", "h2", failing_image)
    wait_for(lambda: len((health(daemon, "h2") or {}).get("Log", [])) == 5 and
             health(daemon, "h2")["FailingStreak"] >= 6, what="six probes")
    state = health(daemon, "h2")
    assert state["Status"] == "unhealthy"
    assert {entry["ExitCode"] for entry in state["Log"]} == {3}
    assert {entry["Output"] for entry in state["Log"]} == {"probe-out\n"}
    assert out(daemon.docker("ps", "-q", "--no-trunc", "--filter", "health=unhealthy")) == \
        inspect(daemon, "h2")["Id"]


def test_no_healthcheck_turns_the_images_off_and_flags_merge_with_it(daemon, failing_image):
    run_detached(daemon, "--name", "h3", "--no-healthcheck", failing_image)
    run_detached(daemon, "--name", "h4", "--health-retries", "9", failing_image)
    time.sleep(0.6)
    assert "Health" not in inspect(daemon, "h3")["State"]
    assert out(daemon.docker("ps", "--filter", "health=none", "--format", "{{.Names}}")) == "h3"
    assert inspect(daemon, "h4")["Config"]["Healthcheck"] == {   # the image's, our retries
        "Test": ["CMD-SHELL", "echo probe-out; exit 3"], "Interval": 200 * MS, "Retries": 9}
    assert health(daemon, "h4")["Status"] == "starting"   # 9 failures make it unhealthy


def test_a_probe_past_its_timeout_is_killed_and_counts_as_failed(daemon):
    run_detached(daemon, "--name", "h5", "--health-cmd", "sleep 5", "--health-timeout", "300ms",
                 "--health-interval", "200ms", "busybox", "sleep", "60")
    state = wait_for(lambda: (health(daemon, "h5") or {}).get("Log"), what="a probe")
    assert state[0]["ExitCode"] == -1
    assert state[0]["Output"] == "Health check exceeded timeout (300ms)"


def test_healthcheck_durations_below_a_millisecond_are_refused(daemon):
    status, body = api_create(daemon, {"Image": "busybox", "Cmd": ["true"],
                                       "Healthcheck": {"Test": ["CMD", "true"], "Interval": 100}})
    assert (status, body["message"]) == (400, "Interval in Healthcheck cannot be less than 1ms")
    status, body = api_create(daemon, {"Image": "busybox", "Cmd": ["true"],
                                       "Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}})
    assert (status, body["message"]) == (400, "Retries in Healthcheck cannot be negative")
    assert json.loads(daemon.request("GET", "/containers/json?all=1").body) == []
