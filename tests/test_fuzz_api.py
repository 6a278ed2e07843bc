"""Fuzzing the API from its spec (issue 10, item 5), and the crashes it found as regressions.

A pydockerd with busybox, in a network namespace of its own (so a fuzzed `networks/create`
makes its bridges there, and a pull or a login reaches no registry), is driven by schemathesis
from tests/fixtures/engine-api-v1.41.yaml over its unix socket: every operation of the spec,
valid and schema-breaking inputs, two thirds of them aimed at real objects (fuzz_support.py
says how the requests are sent and judged). `make test` runs a short, derandomized slice (10
examples per operation, about 950 requests); `make soak` runs up to 400 examples per operation
with fresh randomness, for at most 30 minutes.
"""
import io
import json
import tarfile

import pytest

from containers_support import (busybox_archive, busybox_daemon,  # noqa: F401 (fixture)
                                remove_all_containers)
from fuzz_support import PYTHON_ERROR_TEXT, FuzzRun

OPERATIONS_IN_THE_SPEC = 106


def fuzz(archive, examples, budget, derandomize):
    with busybox_daemon(archive, netns=True) as daemon:
        run = FuzzRun(daemon, examples, budget, derandomize).run()
        print(run.summary())
        assert not run.failures, "%d failures (%s):\n%s" % (
            len(run.failures), run.summary(), run.report())
    return run


def test_fuzz_every_operation_short_slice(busybox_archive):
    run = fuzz(busybox_archive, examples=10, budget=60, derandomize=True)
    assert len(run.covered) == OPERATIONS_IN_THE_SPEC


@pytest.mark.soak
def test_fuzz_every_operation_soak(busybox_archive):
    run = fuzz(busybox_archive, examples=400, budget=1800, derandomize=False)
    assert len(run.covered) == OPERATIONS_IN_THE_SPEC


# -- the crashes the fuzzing found, one deterministic test each -------------------------------

@pytest.fixture(scope="module")
def plain_daemon(busybox_archive):
    """A daemon with busybox (-b none) for the regression tests."""
    with busybox_daemon(busybox_archive) as daemon:
        yield daemon


@pytest.fixture
def api(plain_daemon):
    """api(method, path, body=None): a request to /v1.41 (JSON body; api.raw(method, path,
    data) sends bytes as they are); containers go afterwards."""
    def request(method, path, body=None):
        return raw(method, path, None if body is None else json.dumps(body).encode())

    def raw(method, path, data):
        return plain_daemon.request(method, "/v1.41" + path, body=data,
                                    headers={"Content-Type": "application/json"})
    request.raw = raw
    yield request
    remove_all_containers(plain_daemon)


def running_container(api, name, tty):
    created = api("POST", "/containers/create?name=" + name, {
        "Image": "busybox", "Cmd": ["sleep", "100"], "Tty": tty, "OpenStdin": tty,
        "HostConfig": {"NetworkMode": "none"}})
    assert created.status == 201, created.body
    assert api("POST", "/containers/%s/start" % name).status == 204


def test_a_resize_outside_16_bits_wraps_and_the_monitor_lives_on(api):
    """Found: `resize?h=-1&w=70000` ended the container's monitor (struct.error in it), and
    every later resize, stop or attach answered 500 "monitor ... went away"."""
    running_container(api, "wide", tty=True)
    assert api("POST", "/containers/wide/resize?h=-1&w=70000").status == 200
    assert api("POST", "/containers/wide/resize?h=24&w=80").status == 200
    assert api("GET", "/containers/wide/json").json()["State"]["Running"]
    stopped = api("POST", "/containers/wide/stop?t=1")
    assert stopped.status == 204, stopped.body


def test_a_resize_without_a_tty_is_a_no_op(api):
    """Found: a resize of a container without a tty answered 500 "the process has no tty";
    containerd's shim ignores it, so dockerd answers 200 (and so for an exec)."""
    running_container(api, "notty", tty=False)
    resized = api("POST", "/containers/notty/resize?h=5336038&w=-39167956")
    assert resized.status == 200, resized.body
    made = api("POST", "/containers/notty/exec", {"Cmd": ["sleep", "5"]})
    exec_id = made.json()["Id"]
    assert api("POST", "/exec/%s/start" % exec_id, {"Detach": True}).status == 200
    resized = api("POST", "/exec/%s/resize?h=10&w=10" % exec_id)
    assert resized.status == 200, resized.body


def test_an_archive_path_with_a_nul_byte_is_a_bad_parameter(api):
    """Found: `PUT archive?path=/tmp%00x` answered 500 "embedded null byte" (and GET, HEAD);
    a NUL in a query parameter is refused before any handler runs."""
    running_container(api, "nul", tty=False)
    for method in ("HEAD", "GET", "PUT"):
        answer = api(method, "/containers/nul/archive?path=/tmp%00x")
        assert answer.status == 400, (method, answer.status, answer.body)
    assert api("GET", "/containers/nul/archive?path=/tmp%00x").json() == {
        "message": "invalid argument: NUL byte in query parameter path"}


def test_an_import_url_with_a_control_character_is_refused_as_url_parse_does(api):
    """Found: `images/create?fromSrc=%27%0E` answered 500 with http.client's "URL can't
    contain control characters"."""
    answer = api("POST", "/images/create?fromSrc=%27%0E")
    assert answer.status == 400, answer.body
    assert answer.json() == {
        "message": "parse \"http://'\x0e\": net/url: invalid control character in URL"}


def test_an_import_url_outside_ascii_is_escaped_and_its_host_not_found(api):
    """Found: `fromSrc=;\x9a\xb0\U000f6aad` answered "'latin-1' codec can't encode"."""
    answer = api("POST", "/images/create?fromSrc=%3B%C2%9A%C2%B0%F3%B6%AA%AD")
    assert answer.status == 400, answer.body
    assert answer.json() == {"message": "error downloading http://;%C2%9A%C2%B0%F3%B6%AA%AD: "
                                        "dial tcp: lookup ;\x9a\xb0\U000f6aad: no such host"}


def test_a_login_to_a_host_name_idna_cannot_encode_is_a_failed_lookup(api):
    """Found: `/auth` with serveraddress "\\x93ExQi" answered "encoding with 'idna' codec
    failed"; Go's resolver finds no such host (and no lookup leaves the machine)."""
    answer = api("POST", "/auth", {"username": "u", "password": "p",
                                   "serveraddress": "\x93ExQi"})
    assert answer.status == 500, answer.body  # a registry that cannot be reached, as dockerd
    assert answer.json()["message"].endswith(": no such host"), answer.body


def test_a_login_server_address_url_parse_refuses_is_a_bad_parameter(api):
    """Found: `/auth` with a space or a control character in serveraddress answered 500 with
    http.client's "URL can't contain control characters", and one with a `[` ended the
    connection unanswered (urlsplit's "Invalid IPv6 URL"); dockerd's Auth parses it first."""
    for address, problem in (("a b", 'invalid character " " in host name'),
                             ("a\x01b", "net/url: invalid control character in URL"),
                             ("host:xx", 'invalid port ":xx" after host'),
                             ("[::1", "missing ']' in host"),
                             ("x\x03[y", "net/url: invalid control character in URL"),
                             ("a[b", 'invalid character "[" in host name')):
        answer = api("POST", "/auth", {"username": "u", "password": "p", "serveraddress": address})
        assert answer.status == 400, answer.body
        assert answer.json() == {"message": 'unable to parse server address: parse "https://%s": %s'
                                            % (address, problem)}


def graceful_container(api, name):
    """A running container whose shell exits at SIGTERM (as pid 1 it ignores it otherwise)."""
    created = api("POST", "/containers/create?name=" + name, {
        "Image": "busybox", "Cmd": ["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"],
        "HostConfig": {"NetworkMode": "none"}})
    assert created.status == 201, created.body
    assert api("POST", "/containers/%s/start" % name).status == 204


def test_a_stop_timeout_of_centuries_still_waits_for_the_stop_signal(api):
    """Found: `restart?t=91675218122` answered 500 "timestamp out of range for platform
    time_t" (a Condition.wait longer than the OS can wait)."""
    graceful_container(api, "ages")
    answer = api("POST", "/containers/ages/restart?t=91675218122")
    assert answer.status == 204, answer.body
    assert api("POST", "/containers/ages/stop?t=91675218122").status == 204
    assert api("GET", "/containers/ages/json").json()["State"]["ExitCode"] == 3  # not killed


def test_a_negative_stop_timeout_waits_for_a_graceful_exit(api):
    """dockerd's ContainerStop: a negative timeout waits as long as the exit takes (pydockerd
    used to kill at once)."""
    graceful_container(api, "patient")
    assert api("POST", "/containers/patient/stop?t=-1").status == 204
    assert api("GET", "/containers/patient/json").json()["State"]["ExitCode"] == 3


def test_ps_args_with_a_nul_byte_are_a_bad_parameter(api):
    """Found: `top?ps_args=@ie%00...` answered 500 "embedded null byte"."""
    running_container(api, "topnul", tty=False)
    answer = api("GET", "/containers/topnul/top?ps_args=%40ie%00x")
    assert (answer.status, answer.json()) == (
        400, {"message": "invalid argument: NUL byte in query parameter ps_args"})


def test_detach_keys_outside_ascii_are_invalid_as_in_go(api):
    """Found by the soak run: `attach?detachKeys=%F2%91%AC%BC` (one character, four bytes in
    UTF-8) answered 500, and an exec created with such DetachKeys failed after its start had
    answered. Go's term.ToBytes takes a one-byte key only."""
    running_container(api, "keys", tty=True)
    answer = api("POST", "/containers/keys/attach?stream=1&stdout=1&detachKeys=%F2%91%AC%BC")
    assert (answer.status, answer.json()) == (
        400, {"message": "Invalid detach keys (\U00091b3c) provided"})
    made = api("POST", "/containers/keys/exec", {"Cmd": ["true"], "DetachKeys": "\u00e9"})
    assert (made.status, made.json()) == (400, {"message": "Invalid escape keys (\u00e9) provided"})


def test_the_archive_of_a_running_container_root_holds_proc_and_sys_empty(api, plain_daemon):
    """Found: `GET archive?path=` (the root) of a running container broke off mid-stream with
    ": Permission denied": the walk went into the container's /proc and /sys. dockerd reads
    the rootfs, where they are empty mount points."""
    running_container(api, "whole", tty=False)
    answer = plain_daemon.request("GET", "/v1.41/containers/whole/archive?path=/", timeout=60)
    assert answer.status == 200
    names = tarfile.open(fileobj=io.BytesIO(answer.body)).getnames()
    assert {"proc", "sys", "bin/busybox", "etc/hostname"} <= set(names)
    assert not [name for name in names if name.startswith(("proc/", "sys/"))]


# Bodies the fuzzing found answered with a 500 or Python's words before bodies were typed from
# the spec (drivers/apitypes.py); each must now be a 4xx in dockerd's words. {c} is a running
# container, {e} an exec of it.
MISTYPED_BODIES = [
    ("POST", "/exec/{e}/start", b"-6.569968810407651e+16"),  # 'float' object has no attribute 'get'
    ("POST", "/containers/{c}/update", b'{"RestartPolicy": 729138}'),  # 'int' ... 'get'
    ("POST", "/auth", b"6433"),  # 'int' object has no attribute 'items'
    ("POST", "/auth", b"[null]"),  # 'list' object has no attribute 'items'
    ("POST", "/auth", b'"\\u00a9r\\u0014*e"'),  # 'str' object has no attribute 'items'
    ("POST", "/commit?container={c}", b'{"ExposedPorts": "x"}'),  # dict() argument after **
    ("POST", "/containers/{c}/exec", b'{"Cmd": -2223}'),  # 'int' object is not iterable
    ("POST", "/containers/{c}/exec", b'{"Cmd": [0]}'),  # sequence item 0: expected str
    ("POST", "/containers/{c}/exec", b'{"Cmd": ["true"], "Env": [[{"": true}]]}'),  # no .split
    ("POST", "/containers/{c}/exec", b'{"Cmd": ["true"], "Env": [1.5]}'),  # 'float' ... 'split'
    ("POST", "/auth", b"\xd1c\xc2\xed\x87}V"),  # 'utf-8' codec can't decode byte 0xd1
    ("POST", "/volumes/create", b"r#\xc0\x19\xcd\x165+\x85\xf0I"),
    ("POST", "/networks/create", b"\x10_\xb5k\xc6"),
    ("POST", "/networks/bridge/connect", b"?9W3\xad\xd1c\xc2\xed\x87}V"),
    ("POST", "/containers/{c}/update", b"\xba\x0b\x94\x96\xfe\xde\x14\xb21'\xb8Yae\x02\xd8f"),
]


@pytest.mark.parametrize("method,path,body", MISTYPED_BODIES)
def test_a_mistyped_body_is_a_bad_request_in_dockerds_words(api, method, path, body):
    running_container(api, "typed", tty=False)
    made = api("POST", "/containers/typed/exec", {"Cmd": ["true"]})
    target = path.format(c="typed", e=made.json()["Id"])
    answer = api.raw(method, target, body)
    message = answer.json()["message"]
    assert 400 <= answer.status < 500, (answer.status, message)
    assert not PYTHON_ERROR_TEXT.search(message), message
