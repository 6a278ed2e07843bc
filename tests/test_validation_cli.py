"""Typed input (issue 10, item 1): each finding of the issue as a client meets it.

Badly typed bodies and query parameters are refused with dockerd's 400 wording before
anything is made; what dockerd refuses at create is refused at create; a container stored
with a bad field is skipped at boot instead of breaking every listing; no Python text ever
reaches a client. The expected messages are those of dockerd 20.10.24 for the same requests.
One daemon for the module, as in test_fidelity_cli.py.
"""
import glob
import json
import os
import socket
import threading

import pytest

# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import api_create, err, inspect, out, run_detached

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


def container_names(daemon):
    return sorted(c["Names"][0] for c in daemon.request("GET", "/containers/json?all=1").json())


def refused(daemon, body, message):
    """Create answers 400 with `message` and nothing is created."""
    status, answer = api_create(daemon, body)
    assert (status, answer) == (400, {"message": message})
    assert container_names(daemon) == []


def post(daemon, path, body=None):
    return daemon.request("POST", path, body=None if body is None else json.dumps(body),
                          headers={"Content-Type": "application/json"})


# -- a string where a boolean belongs ---------------------------------------------------------

@pytest.mark.parametrize("field", ["Privileged", "ReadonlyRootfs", "AutoRemove", "Init"])
def test_a_string_for_a_host_config_bool_is_refused(daemon, field):
    refused(daemon, {"Image": "busybox", "HostConfig": {field: "false"}},
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.%s "
            "of type bool" % field)


def test_a_string_for_tty_is_refused(daemon):
    refused(daemon, {"Image": "busybox", "Tty": "false"},
            "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.Tty "
            "of type bool")


def test_fields_match_case_insensitively_as_in_go(daemon):
    refused(daemon, {"Image": "busybox", "HostConfig": {"privileged": "false"}},
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Privileged "
            "of type bool")


def test_privileged_false_as_a_bool_stays_unprivileged(daemon):
    status, answer = api_create(daemon, {"Image": "busybox", "Cmd": ["true"],
                                         "HostConfig": {"Privileged": False}})
    assert status == 201
    assert inspect(daemon, answer["Id"])["HostConfig"]["Privileged"] is False


# -- other types --------------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ({"HostConfig": {"NetworkMode": 5}}, "cannot unmarshal number into Go struct field "
     "HostConfig.HostConfig.NetworkMode of type container.NetworkMode"),
    ({"User": 5}, "cannot unmarshal number into Go struct field ContainerConfigWrapper.User "
     "of type string"),
    ({"Env": [5]}, "cannot unmarshal number into Go struct field ContainerConfigWrapper.Env "
     "of type string"),
    ({"HostConfig": {"Memory": 1e30}}, "cannot unmarshal number 1e+30 into Go struct field "
     "HostConfig.HostConfig.Memory of type int64"),
    ({"HostConfig": {"BlkioWeight": 70000}}, "cannot unmarshal number 70000 into Go struct "
     "field HostConfig.HostConfig.BlkioWeight of type uint16"),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Target": 5}]}}, "cannot unmarshal number "
     "into Go struct field Mount.HostConfig.Mounts.Target of type string"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 5}]}}}, "cannot unmarshal number "
     "into Go struct field PortBinding.HostConfig.PortBindings.HostPort of type string"),
    ({"Healthcheck": {"Test": "x"}}, "cannot unmarshal string into Go struct field "
     "HealthConfig.Healthcheck.Test of type []string"),
    ({"HostConfig": {"CapDrop": 5}}, "cannot unmarshal number into Go struct field "
     "HostConfig.HostConfig.CapDrop of type string"),
])
def test_badly_typed_fields_are_refused_with_gos_words(daemon, body, message):
    refused(daemon, dict(body, Image="busybox"), "json: " + message)


def test_an_int64_overflow_quotes_the_number_as_sent(daemon):
    raw = b'{"Image":"busybox","HostConfig":{"Memory":99999999999999999999}}'
    response = daemon.request("POST", "/containers/create", body=raw,
                              headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert response.json()["message"] == (
        "json: cannot unmarshal number 99999999999999999999 into Go struct field "
        "HostConfig.HostConfig.Memory of type int64")
    raw = b'{"Image":"busybox","HostConfig":{"Memory":1e30}}'
    response = daemon.request("POST", "/containers/create", body=raw,
                              headers={"Content-Type": "application/json"})
    assert "number 1e30 into" in response.json()["message"]


def test_a_body_that_is_no_object_names_the_wrapper(daemon):
    refused(daemon, [1], "json: cannot unmarshal array into Go value of type "
                         "runconfig.ContainerConfigWrapper")


@pytest.mark.parametrize("path, body, message", [
    ("/containers/{id}/exec", {"Cmd": "sh"},
     "cannot unmarshal string into Go struct field ExecConfig.Cmd of type []string"),
    ("/containers/{id}/update", {"Memory": "x"},
     "cannot unmarshal string into Go struct field UpdateConfig.Memory of type int64"),
    ("/volumes/create", {"Name": 5},
     "cannot unmarshal number into Go struct field VolumeCreateBody.Name of type string"),
    ("/auth", {"username": 5},
     "cannot unmarshal number into Go struct field AuthConfig.username of type string"),
    ("/commit?container={id}", {"User": 5},
     "cannot unmarshal number into Go struct field ContainerConfigWrapper.User of type string"),
    ("/networks/create", {"Name": "n", "Internal": "false"},
     "cannot unmarshal string into Go struct field NetworkCreateRequest.Internal of type bool"),
    ("/networks/none/connect", {"Container": 5},
     "cannot unmarshal number into Go struct field NetworkConnect.Container of type string"),
])
def test_every_body_is_typed(daemon, path, body, message):
    cid = out(daemon.docker("create", "busybox", "true"))
    response = post(daemon, path.format(id=cid), body)
    assert (response.status, response.json()) == (400, {"message": "json: " + message})


# -- strings Go takes and the kernel would not ----------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"Env": ["A=\x00b"]}, "ContainerConfigWrapper.Env"),
    ({"Cmd": ["a\x00b"]}, "ContainerConfigWrapper.Cmd"),
    ({"WorkingDir": "/a\x00b"}, "ContainerConfigWrapper.WorkingDir"),
    ({"HostConfig": {"Binds": ["/tmp:/a\x00b"]}}, "HostConfig.HostConfig.Binds"),
])
def test_a_nul_byte_is_refused_at_create(daemon, body, field):
    refused(daemon, dict(body, Image="busybox"),
            "invalid argument: NUL byte in Go struct field %s" % field)


def test_a_lone_surrogate_decodes_as_the_replacement_character(daemon):
    status, answer = api_create(daemon, {"Image": "busybox", "Cmd": ["true"],
                                         "Env": ["A=\ud800x"], "Labels": {"l": "\udfff"}})
    assert status == 201
    config = inspect(daemon, answer["Id"])["Config"]
    assert "A=\ufffdx" in config["Env"] and config["Labels"] == {"l": "\ufffd"}


# -- what dockerd refuses at create ----------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ({"Env": ["=x"]}, "invalid environment variable: =x"),
    ({"Env": [""]}, "invalid environment variable: "),
    ({"HostConfig": {"Binds": ["/tmp:/x", "/tmp:/x"]}}, "Duplicate mount point: /x"),
    ({"HostConfig": {"Memory": 1}}, "Minimum memory limit allowed is 6MB"),
    ({"HostConfig": {"CapAdd": ["CAP_FOO"]}}, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    ({"HostConfig": {"CapDrop": ["CAP_FOO"]}}, 'invalid CapDrop: unknown capability: "CAP_FOO"'),
    ({"HostConfig": {"IpcMode": "container:nope"}}, "No such container: nope"),
    ({"HostConfig": {"PidMode": "container:nope"}}, "No such container: nope"),
    ({"HostConfig": {"NetworkMode": "container:"}},
     "Invalid network mode: invalid container format container:<name|id>"),
    ({"StopSignal": "FOO"}, "Invalid signal: FOO"),
    ({"Healthcheck": {"Interval": -1}}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Timeout": -1}}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"StartPeriod": -1}}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Retries": -1}}, "Retries in Healthcheck cannot be negative"),
])
def test_create_refuses_what_dockerd_refuses(daemon, body, message):
    refused(daemon, dict(body, Image="busybox"), message)


def test_env_null_and_capdrop_as_a_string_are_accepted_and_start(daemon):
    status, answer = api_create(daemon, {"Image": "busybox", "Cmd": ["grep", "CapEff",
                                                                     "/proc/self/status"],
                                         "Env": None, "HostConfig": {"CapDrop": "ALL"}})
    assert status == 201, answer
    assert inspect(daemon, answer["Id"])["HostConfig"]["CapDrop"] == ["ALL"]
    result = daemon.docker("start", "-a", answer["Id"])
    assert out(result).split() == ["CapEff:", "0000000000000000"]


# -- query parameters -----------------------------------------------------------------------------

def test_restart_with_an_overflowing_timeout_is_a_400(daemon):
    cid = run_detached(daemon, "busybox", "sleep", "30")
    response = post(daemon, "/containers/%s/restart?t=-99999999999999999999" % cid)
    assert (response.status, response.json()) == (400, {
        "message": 'strconv.Atoi: parsing "-99999999999999999999": value out of range'})
    response = post(daemon, "/containers/%s/stop?t=1.5" % cid)
    assert (response.status, response.json()) == (400, {
        "message": 'strconv.Atoi: parsing "1.5": invalid syntax'})
    assert inspect(daemon, cid)["State"]["Running"] is True


def test_resize_without_a_tty_is_a_no_op_as_in_dockerd(daemon):
    cid = run_detached(daemon, "busybox", "sleep", "30")
    response = post(daemon, "/containers/%s/resize?h=10&w=20" % cid)
    assert response.status == 200
    assert inspect(daemon, cid)["State"]["Running"] is True
    response = post(daemon, "/containers/%s/resize?h=abc&w=20" % cid)
    assert (response.status, response.json()) == (400, {
        "message": 'strconv.Atoi: parsing "abc": invalid syntax'})


def test_a_nul_byte_in_a_query_parameter_is_a_400(daemon):
    cid = out(daemon.docker("create", "busybox", "true"))
    response = daemon.request("GET", "/containers/%s/archive?path=/a%%00b" % cid)
    assert response.status == 400
    assert "NUL byte" in response.json()["message"]


# -- stored state ----------------------------------------------------------------------------------

def set_hostconfig_network_mode(host_config):
    host_config["NetworkMode"] = 5  # what a daemon before typed input could store


def set_state_running(document):
    document["State"]["running"] = "yes"


def set_network_settings(document):
    document["NetworkSettings"] = []


@pytest.mark.parametrize("filename, edit, reason", [
    ("hostconfig.json", set_hostconfig_network_mode, "NetworkMode"),
    ("config.v2.json", set_state_running, "State.running"),
    ("config.v2.json", set_network_settings, "NetworkSettings"),
])
def test_a_stored_container_with_a_bad_field_is_skipped_not_fatal(daemon, filename, edit, reason):
    suffix = edit.__name__
    good = out(daemon.docker("create", "--name", "good-" + suffix, "busybox", "true"))
    bad = out(daemon.docker("create", "--name", "bad-" + suffix, "busybox", "true"))
    daemon.stop()
    [path] = glob.glob(os.path.join(daemon.root, "containers", bad, filename))
    with open(path) as stored:
        document = json.load(stored)
    edit(document)
    with open(path, "w") as stored:
        json.dump(document, stored)
    daemon.start()
    assert out(daemon.docker("ps", "-a", "--format", "{{.Names}}")) == "good-" + suffix
    assert inspect(daemon, good)["State"]["Status"] == "created"
    assert "No such object" in err(daemon.docker("inspect", bad, check=False))
    [logged] = [line for line in daemon.log().splitlines()
                if "Failed to load container %s: " % bad in line][-1:]
    assert reason in logged


# -- a bug is the server's fault, told in the log ---------------------------------------------------

def test_a_bug_answers_500_with_a_short_message_and_logs_the_traceback(monkeypatch, caplog,
                                                                     tmp_path):
    import pydockerd

    def broken(handler):
        raise RuntimeError("python's own words")

    monkeypatch.setattr(pydockerd.APIHandler, "get_version", broken)
    server = pydockerd.UnixAPIServer(str(tmp_path / "api.sock"), "docker", daemon=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(tmp_path / "api.sock"))
            client.sendall(b"GET /v1.41/version HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            answer = b"".join(iter(lambda: client.recv(65536), b"")).decode()
    finally:
        server.shutdown()
        server.server_close()
    assert answer.startswith("HTTP/1.1 500 ")
    assert answer.endswith('\r\n\r\n{"message":"internal server error"}\n')
    assert "python's own words" not in answer
    assert "GET /v1.41/version HTTP/1.1" in caplog.text and "RuntimeError" in caplog.text
