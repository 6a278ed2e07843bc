"""Typed input (issue 10, item 1): each finding of the issue as a client meets it.

Badly typed bodies and query parameters are refused with dockerd's 400 wording before
anything is made; what dockerd refuses at create is refused at create; a container stored
with a bad field is skipped at boot instead of breaking every listing; no Python text ever
reaches a client. The expected messages are those of dockerd 20.10.24 for the same requests.
One daemon for the module, as in test_fidelity_cli.py.

Issue #10's findings and their regression tests
-----------------------------------------------
Each finding of the issue's "Why", its test, and what the test met copied onto d1249ce (the
code before the issue) and run alone. V = this file, C = test_container_faults.py,
I = test_image_faults.py, H = test_http_strict.py. The tests, by short name:

  bool     V::test_a_string_for_a_host_config_bool_is_refused
  tty      V::test_a_string_for_tty_is_refused
  typed    V::test_badly_typed_fields_are_refused_with_gos_words
  stored   V::test_a_stored_container_with_a_bad_field_is_skipped_not_fatal
  nul      V::test_a_nul_byte_is_refused_at_create
  surr     V::test_a_lone_surrogate_decodes_as_the_replacement_character
  refuse   V::test_create_refuses_what_dockerd_refuses
  capdrop  V::test_env_null_and_capdrop_as_a_string_are_accepted_and_start
  restart  V::test_restart_with_an_overflowing_timeout_is_a_400
  resize   V::test_resize_without_a_tty_is_a_no_op_as_in_dockerd
  storm    C::test_kill_during_operation[storm-1]
  names    C::test_leftovers_of_creates_and_names_are_removed_at_boot
  cut      C::test_start_cut_short_is_undone_at_boot
  workdir  C::test_workdir_below_an_absolute_symlink_is_made_inside_the_root
  staging  I::test_boot_removes_what_a_killed_load_left
  hostile  I::test_load_refuses_hostile_layer
  strict   H::test_refused_like_go_and_the_daemon_still_answers
  chunk    H::test_malformed_chunked_body_is_a_400_with_go_words
  idle     H::test_idle_connections_cost_no_thread_and_are_all_served

  Finding                           Test [case]                    Fails on d1249ce
  Privileged, ReadonlyRootfs,       bool[Privileged],              yes: 201, each
    AutoRemove, Init "false" true     [ReadonlyRootfs],
                                      [AutoRemove], [Init]
  Tty "false" read as true          tty                            yes: 201
  NetworkMode 5 breaks ps, inspect  stored[...-NetworkMode]        yes: `ps -a` cannot decode
    ... and how one was stored      typed {"networkmode": 5}       yes: 201 (a)
  User 5: raw Python text           typed {"User": 5}              yes: 201, broken at start
  embedded null byte: raw text      nul[*] (Env, Cmd, ...)         yes: 201; start 500 ValueError
  lone surrogate in Env: raw text   surr                           yes: kept raw; start 500
  chunk size -2: raw text in a 500  chunk[size -2]                 yes: 500
  Env "" and "=x" accepted          refuse Env [""], ["=x"]        yes: 201, each
  a mount point twice accepted      refuse {"binds": twice}        yes: 201 (a)
  Memory 1 accepted                 refuse {"memory": 1}           yes: 201 (a)
  unknown capabilities accepted     refuse {"capadd": [CAP_FOO]}   yes: 201 (a)
  container:<missing> IPC, PID      refuse IpcMode, PidMode        yes: 201, each
  unknown StopSignal accepted       refuse StopSignal "FOO"        yes: 201
  negative healthcheck interval     refuse {"healthcheck":         yes: 201 (a)
                                      {"interval": -1}}
  CapDrop "ALL" fails at start      capdrop                        yes: 400 'unknown capability
                                                                     "A"'
  storm: name reserved by nothing   storm; names                   yes: /s<n> names a missing
                                                                     container (b); names: the
                                                                     name "in use" by a container
                                                                     rm says does not exist
  storm: its empty directory        names                          yes: the empty directory kept
  storm: monitors, half-started     cut; every storm case's        yes: alive 10 s after boot,
    processes alive after restart     check_nothing_left (rm -f)     and after rm -f
    and after rm -f
  storm: Created, overlay mounted   cut                            yes: mount, cgroups kept (c)
  load: staging dir in <root>/tmp   staging                        yes: docker-import-* kept
  no Host; two Content-Lengths;     strict[no Host],               yes: each served (200 or a
    Content-Length with chunked;      [two Content-Lengths],         handler's 4xx)
    bare-LF lines                     [Content-Length and chunked],
                                      [bare LF everywhere],
                                      [bare LF in a header]
  2,000 idle clients: 2,002 threads idle                           yes: 2,003 threads
  -w /wd/x, /wd an absolute link    workdir                        yes: mkdir /wd/x: no such file
  layer tar writes through a        hostile[through-absolute-      yes: loaded, each
    symlink it made                   symlink], [through-dotdot-
                                      chain]
  layer tar repeats an entry        hostile[repeated-entry]        yes: loaded
  restart?t=-99999999999999999999   restart                        yes: 204
  resize without a tty: 500         resize                         yes: 500

(a) Go matches JSON keys case-insensitively; d1249ce checked only the exact spelling, so a
    lower-case key got past its checks. Spelled exactly, d1249ce already refused these in
    dockerd's words: refuse's Binds, Memory and Healthcheck cases pass there, its CapAdd and
    CapDrop cases and typed's NetworkMode case fail there on wording only.
(b) storm-2's later kill left nothing torn there: it passes on d1249ce.
(c) cut stops at its earlier check there (processes alive); without that check, the Created
    container's overlay mount, cgroups and state directory were all still there after boot.
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
    # Go matches keys case-insensitively: a lower-case key is the same field, typed alike
    # (before typed input, this one was stored and broke inspect and start).
    ({"HostConfig": {"networkmode": 5}}, "cannot unmarshal number into Go struct field "
     "HostConfig.HostConfig.NetworkMode of type container.NetworkMode"),
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
    status, answer = api_create(daemon, {"Image": "busybox", "Cmd": ["env"],
                                         "Env": ["A=\ud800x"], "Labels": {"l": "\udfff"}})
    assert status == 201
    config = inspect(daemon, answer["Id"])["Config"]
    assert "A=\ufffdx" in config["Env"] and config["Labels"] == {"l": "\ufffd"}
    assert "A=\ufffdx" in out(daemon.docker("start", "-a", answer["Id"])).split("\n")


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
    # The same checks reached through Go's case-insensitive keys (once created unchecked).
    ({"HostConfig": {"binds": ["/tmp:/x", "/tmp:/x"]}}, "Duplicate mount point: /x"),
    ({"HostConfig": {"memory": 1}}, "Minimum memory limit allowed is 6MB"),
    ({"HostConfig": {"capadd": ["CAP_FOO"]}}, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    ({"healthcheck": {"interval": -1}}, "Interval in Healthcheck cannot be less than 1ms"),
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
