"""End to end: a real pydockerd, the real docker CLI and a stdlib HTTP client."""
import io
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import tarfile
import threading
import time

import pytest

from conftest import DaemonProcess, UnixHTTPConnection, new_daemon_dir

STEPS = ["set_default_mtu", "check_config_options", "is_bridge_network_disabled",
         "check_platform_supported", "check_system", "setup_dump_stack_trap", "setup_daemon_root",
         "setup_tmp_dir", "init_graph_driver", "verify_log_driver",
         "configure_kernel_security_support", "make_containers_dir", "init_graph",
         "configure_volumes", "load_daemon_id", "init_trust_store", "init_events",
         "init_tag_store", "init_network_controller",
         "open_linkgraph", "check_sysinfo", "init_exec_driver", "restore"]


# -- the CLI sees a Docker daemon at API 1.41 -----------------------------------------------

def test_docker_version_shows_api_141(shared_daemon):
    out = shared_daemon.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}")
    assert out.stdout.decode().strip() == "1.41 linux"


def test_docker_info_shows_id_root_and_driver(shared_daemon):
    out = shared_daemon.docker("info", "--format", "{{.ID}}|{{.DockerRootDir}}|{{.Driver}}")
    daemon_id, root, driver = out.stdout.decode().strip().split("|")
    with open(shared_daemon.key) as key:
        assert daemon_id == json.load(key)["kid"]
    assert root == shared_daemon.root
    assert driver == "overlay"


def test_info_has_real_values(shared_daemon):
    info = shared_daemon.request("GET", "/v1.41/info").json()
    assert info["NCPU"] == os.cpu_count()
    assert info["KernelVersion"] == os.uname().release
    assert info["MemTotal"] > 0 and info["OSType"] == "linux"
    assert info["CgroupVersion"] in ("1", "2") and info["CgroupDriver"] == "cgroupfs"
    assert info["Images"] == 0 and info["Containers"] == 0
    assert ["Backing Filesystem", "extfs"] in info["DriverStatus"]
    assert info["Name"] == socket.gethostname()
    assert "127.0.0.0/8" in info["RegistryConfig"]["InsecureRegistryCIDRs"]


def test_ping_headers(shared_daemon):
    for method in ("HEAD", "GET"):
        response = shared_daemon.request(method, "/_ping")
        assert response.status == 200
        assert response.headers["Api-Version"] == "1.41"
        assert response.headers["Ostype"] == "linux"
        assert response.headers["Docker-Experimental"] == "false"
        assert response.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    assert shared_daemon.request("GET", "/_ping").body == b"OK"


def test_version_paths_with_and_without_prefix(shared_daemon):
    for path in ("/version", "/v1.41/version", "/v1.24/version", "/v1.12/version"):
        response = shared_daemon.request("GET", path)
        assert response.status == 200, path
        assert response.json()["ApiVersion"] == "1.41"
        assert response.json()["MinAPIVersion"] == "1.12"


def test_system_df_answers(shared_daemon):
    usage = shared_daemon.request("GET", "/v1.41/system/df").json()
    assert usage["Images"] == [] and usage["LayersSize"] == 0
    assert shared_daemon.docker("system", "df").returncode == 0


def test_socket_is_0660(shared_daemon):
    mode = os.stat(shared_daemon.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660


def test_socket_refuses_users_outside_the_group(shared_daemon):
    probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); "
             "s.connect(sys.argv[1])")
    result = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                             "python3", "-c", probe, shared_daemon.socket],
                            stderr=subprocess.PIPE)
    assert result.returncode != 0
    assert b"Permission denied" in result.stderr


def test_keep_alive_serves_several_requests_on_one_connection(shared_daemon):
    connection = UnixHTTPConnection(shared_daemon.socket)
    for path in ("/_ping", "/v1.41/version", "/v1.41/info"):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    connection.close()


# -- bad input: a 400-class JSON answer, and the daemon keeps serving ------------------------

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("method, path, body, headers, status, message", [
    ("GET", "/v1.41/nosuch", None, {}, 404, "page not found"),
    ("GET", "/notfound", None, {}, 404, "page not found"),
    ("DELETE", "/v1.41/version", None, {}, 404, "page not found"),
    ("GET", "/v1.99/version", None, {}, 400,
     "client version 1.99 is too new. Maximum supported API version is 1.41"),
    ("GET", "/v1.11/version", None, {}, 400,
     "client version 1.11 is too old. Minimum supported API version is 1.12, please upgrade "
     "your client to a newer version"),
    ("GET", "/v1.41/events?filters=%7Bbad", None, {}, 400, "invalid JSON"),
    ("GET", "/v1.41/events?since=yesterday", None, {}, 400, "invalid value for since"),
])
def test_error_answers_are_json(shared_daemon, method, path, body, headers, status, message):
    response = shared_daemon.request(method, path, body=body, headers=headers)
    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    assert message in response.json()["message"]


CREATE = "/v1.41/containers/create"


@pytest.mark.parametrize("body, headers, message", [
    (b'{"Image":"x"}', {"Content-Type": "text/plain"},
     "Content-Type specified (text/plain) must be 'application/json'"),
    (b"{invalid json", JSON, "invalid JSON"),
    (b'{"Image":"x"} trailing', JSON, "unexpected content after JSON"),
    (b"", JSON, "config cannot be empty in order to create a container"),
    (b'{"Image":"x","HostConfig":{"Memory":NaN}}', JSON, "invalid JSON"),
    (b"[" * 10000, JSON, "invalid JSON"),
    (b"[1, 2]", JSON, "cannot unmarshal array"),
])
def test_bad_create_bodies_are_400(shared_daemon, body, headers, message):
    response = shared_daemon.request("POST", CREATE, body=body, headers=headers)
    assert response.status == 400
    assert message in response.json()["message"]
    assert shared_daemon.request("GET", "/_ping").status == 200


def test_unknown_create_fields_are_ignored_like_go_does(shared_daemon):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("marker")
        tar.addfile(info, io.BytesIO(b""))
    shared_daemon.docker("import", "-c", 'CMD ["/marker"]', "-", "bogus-field:1", input=layer.getvalue())
    response = shared_daemon.request("POST", CREATE, headers=JSON,
                                     body=b'{"Image":"bogus-field:1","Bogus":1}')
    assert response.status == 201
    shared_daemon.docker("rm", response.json()["Id"])
    shared_daemon.docker("rmi", "bogus-field:1")


def test_create_of_a_missing_image_is_404_so_the_cli_pulls(shared_daemon):
    response = shared_daemon.request("POST", CREATE, headers=JSON, body=b'{"Image":"no/such:image"}')
    assert response.status == 404
    assert response.json() == {"message": "No such image: no/such:image"}


def test_huge_header_gets_gos_431_and_the_daemon_lives(shared_daemon):
    """Past net/http's DefaultMaxHeaderBytes (1 MB, + 4 KB of slack); see test_http_strict."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(shared_daemon.socket)
    sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * ((1 << 20) + 5000) + b"\r\n\r\n")
    answer = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431")
    assert answer.endswith(b"\r\n\r\n431 Request Header Fields Too Large")
    assert shared_daemon.request("GET", "/_ping").status == 200


def test_garbage_request_line_is_answered_and_survived(shared_daemon):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(shared_daemon.socket)
    sock.sendall(b"\x00\x01\x02 garbage\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    sock.close()
    assert shared_daemon.request("GET", "/_ping").status == 200


def test_chunked_request_body_is_read(shared_daemon):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(shared_daemon.socket)
    sock.sendall(b"POST /v1.41/nosuch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n0\r\n\r\nGET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    answer = sock.recv(65536)
    sock.close()
    assert answer.count(b"HTTP/1.1 ") == 2  # the body was consumed, so the ping was parsed
    assert b"HTTP/1.1 200 OK" in answer


# -- events ---------------------------------------------------------------------------------

def test_events_stream_flushes_headers_at_once(shared_daemon):
    connection = UnixHTTPConnection(shared_daemon.socket, timeout=5)
    connection.request("GET", "/v1.41/events")
    response = connection.getresponse()
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Transfer-Encoding"] == "chunked"
    connection.close()


def test_events_until_in_the_past_ends_the_stream(shared_daemon):
    now = int(time.time())
    response = shared_daemon.request("GET", "/v1.41/events?since=%d&until=%d" % (now - 60, now - 30),
                                     timeout=5)
    assert response.status == 200 and response.body == b""


# -- the boot narrates itself, fails cleanly, and owns its pidfile ---------------------------

def test_debug_logs_every_boot_step_in_order(make_daemon):
    daemon = make_daemon("-D", "-b", "none")
    log = daemon.log()
    positions = [log.index("boot step %s done in" % step) for step in STEPS]
    assert positions == sorted(positions)


def test_failed_boot_exits_non_zero_and_leaves_nothing(make_daemon):
    daemon = make_daemon("--log-driver", "carrier-pigeon", start=False)
    daemon.start(wait=False)
    assert daemon.proc.wait(20) != 0
    assert "error finding the logging driver" in daemon.log()
    assert not os.path.exists(daemon.pidfile)
    assert not os.path.exists(daemon.socket)
    with open("/proc/self/mounts") as mounts:
        assert daemon.dir not in mounts.read()


def test_a_listener_that_cannot_listen_closes_those_already_open(make_daemon):
    daemon = make_daemon("-b", "none", start=False)
    in_the_way = os.path.join(daemon.dir, "not-a-socket")
    with open(in_the_way, "w") as blocker:
        blocker.write("a file, not a socket")
    daemon.flags += ["-H", "unix://" + in_the_way]
    daemon.start(wait=False)
    assert daemon.proc.wait(20) != 0
    assert "a file that is not a socket is in the way" in daemon.log()
    assert not os.path.exists(daemon.socket)   # the first -H was bound, then closed


def test_second_daemon_on_the_same_pidfile_is_refused(make_daemon):
    first = make_daemon("-b", "none")
    second = DaemonProcess(first.dir, ["-b", "none"])
    second.socket = os.path.join(first.dir, "other.sock")
    second.log_path = os.path.join(first.dir, "other.log")
    second.start(wait=False)
    assert second.proc.wait(20) != 0
    assert "pid file found, ensure docker is not running or delete %s" % first.pidfile in second.log()
    assert first.request("GET", "/_ping").status == 200


def test_sigusr1_dumps_stacks_and_keeps_serving(make_daemon):
    daemon = make_daemon("-b", "none")
    os.kill(daemon.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "thread stacks written to" not in daemon.log():
        time.sleep(0.05)
    assert "=== BEGIN thread stack dump ===" in daemon.log()
    dumps = [name for name in os.listdir(daemon.exec_root) if name.startswith("thread-stacks-")]
    assert len(dumps) == 1
    assert daemon.request("GET", "/_ping").status == 200


def test_sigterm_removes_socket_and_pidfile(make_daemon):
    daemon = make_daemon("-b", "none")
    assert daemon.stop(signal.SIGTERM) == 0
    assert not os.path.exists(daemon.socket)
    assert not os.path.exists(daemon.pidfile)
    assert "Daemon shutdown complete" in daemon.log()


def test_sigterm_ends_an_open_event_stream(make_daemon):
    daemon = make_daemon("-b", "none")
    connection = UnixHTTPConnection(daemon.socket, timeout=20)
    connection.request("GET", "/v1.41/events")
    response = connection.getresponse()
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(response.read()))
    reader.start()
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    reader.join(15)
    assert outcome == [b""]  # the stream ended with its final chunk, not a cut connection
    assert time.monotonic() - started < 15


def test_stale_socket_is_replaced(make_daemon):
    directory = new_daemon_dir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(os.path.join(directory, "d.sock"))
    stale.close()
    daemon = make_daemon("-b", "none", directory=directory)
    assert daemon.request("GET", "/_ping").status == 200


def test_trust_key_is_reused_across_restarts(make_daemon):
    daemon = make_daemon("-b", "none")
    first = daemon.request("GET", "/info").json()["ID"]
    daemon.stop()
    daemon.start()
    assert daemon.request("GET", "/info").json()["ID"] == first
    assert stat.S_IMODE(os.stat(daemon.key).st_mode) == 0o600


# -- TLS ------------------------------------------------------------------------------------

def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


@pytest.fixture
def throwaway_ca(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all made here."""
    d = str(tmp_path)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", d + "/ca-key.pem", "-out", d + "/ca.pem")
    with open(d + "/ext.cnf", "w") as ext:
        ext.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    for who in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + who,
                "-keyout", "%s/%s-key.pem" % (d, who), "-out", "%s/%s.csr" % (d, who))
        openssl("x509", "-req", "-in", "%s/%s.csr" % (d, who), "-CA", d + "/ca.pem",
                "-CAkey", d + "/ca-key.pem", "-CAcreateserial", "-days", "1",
                "-extfile", d + "/ext.cnf", "-out", "%s/%s.pem" % (d, who))
    return d


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tlsverify_serves_clients_with_a_certificate_only(make_daemon, throwaway_ca):
    d, port = throwaway_ca, free_port()
    daemon = make_daemon("-b", "none", "-H", "tcp://127.0.0.1:%d" % port, "--tlsverify",
                         "--tlscacert", d + "/ca.pem", "--tlscert", d + "/server.pem",
                         "--tlskey", d + "/server-key.pem")
    out = daemon.docker("-H", "tcp://127.0.0.1:%d" % port, "--tlsverify", "--tlscacert", d + "/ca.pem",
                        "--tlscert", d + "/client.pem", "--tlskey", d + "/client-key.pem",
                        "version", "--format", "{{.Server.APIVersion}}")
    assert out.stdout.decode().strip() == "1.41"
    context = ssl.create_default_context(cafile=d + "/ca.pem")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                if not tls.recv(100):
                    raise ConnectionError("closed without a client certificate")
    assert daemon.request("GET", "/_ping").status == 200
