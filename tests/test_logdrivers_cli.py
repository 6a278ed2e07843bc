"""The log drivers from the docker CLI, as a user runs them: `docker run --log-driver gelf
--log-opt gelf-address=udp://127.0.0.1:PORT ...` against a pydockerd (-b none) and a real
receiver the test owns (tests/logreceivers.py); the receiver's view checked against what
`docker inspect` says of the container; `docker logs` through the dual-logging cache; the
modes when the receiver stalls or goes away; bad options refused at create and at boot;
lines that keep flowing while the daemon is down.

The daemon of this module runs with PYDOCKERD_TEST_JOURNAL_SOCKET set, so its journald driver
talks to the test's journal socket instead of /run/systemd/journal/socket.
"""
import os
import socket
import time

import pytest

from conftest import boot_log_of_a_refused_daemon
from containers_support import (busybox_archive, err, inspect, logs_of, out,  # noqa: F401
                                no_containers_left, retire_daemon, run, run_detached,
                                start_busybox_daemon, wait_until_exited)
from drivers import journald, local
from logreceivers import (GelfUDP, JournalSocket, StreamReceiver, forward,  # noqa: F401
                          forward_events, free_port, gelf_tcp_messages, gelf_udp, rsyslog,
                          wait_for)

@pytest.fixture(scope="module")
def journal_path(tmp_path_factory):
    """Where this module's daemon sends journald entries (nobody listens unless a test does)."""
    return str(tmp_path_factory.mktemp("journal") / "journal.sock")


@pytest.fixture(scope="module")
def daemon(busybox_archive, journal_path):  # noqa: F811
    process = start_busybox_daemon(busybox_archive, env={journald.TEST_SOCKET_ENV: journal_path})
    yield process
    retire_daemon(process)


OUT_AND_ERR = "echo to-stdout; echo to-stderr >&2"


def expected_facts(daemon, name):
    container = inspect(daemon, name)
    return {"id": container["Id"], "image_id": container["Image"], "created": container["Created"],
            "name": container["Name"].lstrip("/")}


def logs_by_stream(daemon, name):
    """`docker logs NAME`: (what it wrote to stdout, to stderr)."""
    result = daemon.docker("logs", name)
    return result.stdout, result.stderr


# -- each driver, end to end -------------------------------------------------------------------------

def test_gelf_udp_fields_match_inspect_and_docker_logs_reads_the_cache(daemon, gelf_udp):
    run(daemon, "--name", "gelfy", "--log-driver", "gelf", "--log-opt",
        "gelf-address=" + gelf_udp.address, "--log-opt", "tag={{.Name}}/{{.ID}}",
        "--log-opt", "labels=team", "--label", "team=ops", "--log-opt", "env=APP", "-e", "APP=shop",
        "busybox", "sh", "-c", OUT_AND_ERR)
    facts = expected_facts(daemon, "gelfy")
    messages = sorted(gelf_udp.messages(2), key=lambda m: m["level"])
    err_message, out_message = messages
    assert out_message["short_message"] == "to-stdout" and out_message["level"] == 6
    assert err_message["short_message"] == "to-stderr" and err_message["level"] == 3
    assert out_message["host"] == socket.gethostname()
    assert (out_message["_container_id"], out_message["_container_name"]) == (facts["id"], "gelfy")
    assert (out_message["_image_id"], out_message["_image_name"]) == (facts["image_id"], "busybox")
    assert out_message["_created"] == facts["created"]
    assert out_message["_command"] == "sh -c " + OUT_AND_ERR
    assert out_message["_tag"] == "gelfy/" + facts["id"][:12]
    assert (out_message["_team"], out_message["_APP"]) == ("ops", "shop")
    assert abs(out_message["timestamp"] - time.time()) < 60
    assert logs_by_stream(daemon, "gelfy") == (b"to-stdout\n", b"to-stderr\n")
    assert inspect(daemon, "gelfy")["LogPath"] == ""


def test_gelf_chunks_reach_the_listener_whole(daemon, gelf_udp):
    run(daemon, "--log-driver", "gelf", "--log-opt", "gelf-address=" + gelf_udp.address,
        "--log-opt", "gelf-compression-type=none", "busybox", "sh", "-c",
        "head -c 5000 /dev/zero | tr '\\0' x; echo")
    message, = gelf_udp.messages(1)
    assert message["short_message"] == "x" * 5000 and gelf_udp.chunk_counts() == [4]


def test_gelf_tcp_from_docker_run(daemon):
    receiver = StreamReceiver()
    try:
        run(daemon, "--log-driver", "gelf", "--log-opt", "gelf-address=tcp://127.0.0.1:%d" % receiver.port,
            "busybox", "sh", "-c", "echo one; echo two")
        data = wait_for(lambda: receiver.received().count(b"\0") >= 2 and receiver.received())
    finally:
        receiver.stop()
    assert [m["short_message"] for m in gelf_tcp_messages(data)] == ["one", "two"]


def test_syslog_to_rsyslog_over_udp_rfc5424(daemon, rsyslog):
    run(daemon, "--name", "sysloggy", "--log-driver", "syslog", "--log-opt",
        "syslog-address=udp://127.0.0.1:%d" % rsyslog.udp_port, "--log-opt", "syslog-format=rfc5424micro",
        "--log-opt", "tag={{.Name}}/{{.ID}}", "--log-opt", "syslog-facility=local4",
        "busybox", "sh", "-c", "echo rfc-out; echo rfc-err >&2")
    tag = "sysloggy/" + expected_facts(daemon, "sysloggy")["id"][:12]
    messages = rsyslog.messages_with("rfc-", 2)
    by_text = {m["msg"].strip(): m for m in messages}
    assert by_text["rfc-out"]["pri"] == str(20 * 8 + 6) and by_text["rfc-err"]["pri"] == str(20 * 8 + 3)
    assert by_text["rfc-out"]["app_name"] == tag and by_text["rfc-out"]["msgid"] == tag
    assert by_text["rfc-out"]["hostname"] == socket.gethostname()
    assert by_text["rfc-out"]["procid"].isdigit()
    assert logs_by_stream(daemon, "sysloggy") == (b"rfc-out\n", b"rfc-err\n")


def test_syslog_to_rsyslogs_unix_socket_in_the_default_format(daemon, rsyslog):
    run(daemon, "--log-driver", "syslog", "--log-opt", "syslog-address=unixgram://" + rsyslog.socket,
        "busybox", "echo", "via-dev-log")
    message, = rsyslog.messages_with("via-dev-log", 1)
    assert message["pri"] == "30"  # daemon.info
    assert message["syslogtag"].startswith(message["app_name"] + "[")  # id[pid]:


def test_journald_entries_from_docker_run(daemon, journal_path):
    receiver = JournalSocket(journal_path)
    try:
        run(daemon, "--name", "journaly", "--log-driver", "journald", "--log-opt", "tag={{.ImageName}}",
            "busybox", "sh", "-c", OUT_AND_ERR)
        entries = receiver.entries(2)
    finally:
        receiver.close()
    facts = expected_facts(daemon, "journaly")
    by_priority = {entry["PRIORITY"]: entry for entry in entries}
    assert by_priority[b"6"]["MESSAGE"] == b"to-stdout" and by_priority[b"3"]["MESSAGE"] == b"to-stderr"
    entry = by_priority[b"6"]
    assert entry["CONTAINER_ID"] == facts["id"][:12].encode()
    assert entry["CONTAINER_ID_FULL"] == facts["id"].encode()
    assert entry["CONTAINER_NAME"] == b"journaly"
    assert entry["CONTAINER_TAG"] == entry["SYSLOG_IDENTIFIER"] == entry["IMAGE_NAME"] == b"busybox"
    assert logs_by_stream(daemon, "journaly") == (b"to-stdout\n", b"to-stderr\n")


def test_journald_start_fails_without_a_journal(daemon):
    result = run(daemon, "--log-driver", "journald", "busybox", "true", check=False)
    assert result.returncode == 125
    assert "failed to initialize logging driver: journald is not enabled on this host" in err(result)


def test_fluentd_events_from_docker_run(daemon, forward):
    run(daemon, "--name", "fluenty", "--log-driver", "fluentd", "--log-opt",
        "fluentd-address=127.0.0.1:%d" % forward.port, "--log-opt", "tag=docker.{{.Name}}",
        "busybox", "sh", "-c", OUT_AND_ERR)
    events = wait_for(lambda: len(forward_events(forward.received())) == 2 and
                      forward_events(forward.received()))
    facts = expected_facts(daemon, "fluenty")
    records = {event[2]["source"]: event for event in events}
    tag, when, record, option = records["stdout"]
    assert (tag, option) == ("docker.fluenty", None) and abs(when - time.time()) < 60
    assert record == {"container_id": facts["id"], "container_name": "/fluenty",
                      "source": "stdout", "log": "to-stdout"}
    assert records["stderr"][2]["log"] == "to-stderr"


def test_local_driver_keeps_its_own_file_and_docker_logs_reads_it(daemon):
    cid = run_detached(daemon, "--name", "localy", "--log-driver", "local", "--log-opt", "max-file=2",
                       "busybox", "sh", "-c", "echo first; echo oops >&2; sleep 1; echo last")
    follower = daemon.docker("logs", "-f", "localy", timeout=30)
    assert (follower.stdout, follower.stderr) == (b"first\nlast\n", b"oops\n")
    path = os.path.join(daemon.root, "containers", cid, local.PATH)
    with open(path, "rb") as log_file:
        entries, consumed = local.LocalLogger.split_records(log_file.read())
    assert [(e.line, e.stream) for e in entries] == [(b"first\n", "stdout"), (b"oops\n", "stderr"),
                                                     (b"last\n", "stdout")]
    assert consumed == os.path.getsize(path)
    assert daemon.docker("logs", "--tail", "1", "localy").stdout == b"last\n"


# -- start-up connections -------------------------------------------------------------------------------

@pytest.mark.parametrize("driver, option, message", [
    ("gelf", "gelf-address=tcp://127.0.0.1:{port}",
     "gelf: cannot connect to GELF endpoint: 127.0.0.1:{port} dial tcp 127.0.0.1:{port}: connect: "
     "connection refused"),
    ("syslog", "syslog-address=tcp://127.0.0.1:{port}", "dial tcp 127.0.0.1:{port}: connect: connection refused"),
    ("fluentd", "fluentd-address=127.0.0.1:{port}", "dial tcp 127.0.0.1:{port}: connect: connection refused"),
])
def test_an_unreachable_destination_fails_the_start(daemon, driver, option, message):
    port = free_port(socket.SOCK_STREAM)
    result = run(daemon, "--name", "unreached", "--log-driver", driver, "--log-opt",
                 option.format(port=port), "busybox", "true", check=False)
    assert result.returncode == 125
    assert "failed to initialize logging driver: " + message.format(port=port) in err(result)
    state = inspect(daemon, "unreached")["State"]
    assert not state["Running"] and state["ExitCode"] == 128


def test_fluentd_async_starts_without_fluentd(daemon):
    port = free_port(socket.SOCK_STREAM)
    run(daemon, "--log-driver", "fluentd", "--log-opt", "fluentd-address=127.0.0.1:%d" % port,
        "--log-opt", "fluentd-async=true", "--name", "patient", "busybox", "echo", "later")
    assert logs_of(daemon, "patient") == "later"


# -- modes: a receiver that stalls or disappears ----------------------------------------------------------

# About 4 MB of output: more than a blocking driver's queue (1 MB) and the socket buffers.
LINES = 40000
MANY_LINES = "seq 1 %d | sed 's/$/ %s/'" % (LINES, "." * 90)


def fluentd_run_detached(daemon, forward, *options):
    return run_detached(daemon, "--name", "chatty", "--log-driver", "fluentd", "--log-opt",
                        "fluentd-address=127.0.0.1:%d" % forward.port, "--log-opt",
                        "fluentd-retry-wait=100ms", *options, "busybox", "sh", "-c", MANY_LINES)


def cached_line_count(daemon):
    return len(logs_of(daemon, "chatty").splitlines())


@pytest.mark.parametrize("receiver_fault", ["stalls", "disappears"])
def test_non_blocking_mode_never_holds_the_container(daemon, forward, receiver_fault):
    forward.reading.clear()  # accepts, reads nothing: the sender's buffers fill
    fluentd_run_detached(daemon, forward, "--log-opt", "mode=non-blocking",
                         "--log-opt", "max-buffer-size=64k")
    if receiver_fault == "disappears":
        wait_for(lambda: forward.received() or forward.connections, what="the driver to connect")
        forward.stop()
    state = wait_until_exited(daemon, "chatty", timeout=60)
    assert state["ExitCode"] == 0
    # Every line is in the local cache; the destination lost what did not fit.
    assert cached_line_count(daemon) == LINES
    forward.reading.set()
    time.sleep(0.5)
    assert len(forward_events(forward.received())) < LINES


def test_blocking_mode_holds_the_container_until_the_receiver_reads(daemon, forward):
    forward.reading.clear()
    fluentd_run_detached(daemon, forward)
    time.sleep(5)
    assert inspect(daemon, "chatty")["State"]["Running"]  # blocked on its pipe
    assert cached_line_count(daemon) < LINES
    forward.reading.set()
    assert wait_until_exited(daemon, "chatty", timeout=90)["ExitCode"] == 0
    events = wait_for(lambda: len(forward_events(forward.received())) == LINES and
                      forward_events(forward.received()), timeout=30, what="every event")
    assert [int(event[2]["log"].split()[0]) for event in events] == list(range(1, LINES + 1))


# -- dual logging options ------------------------------------------------------------------------------------

def test_cache_disabled_leaves_docker_logs_nothing_to_read(daemon, gelf_udp):
    run(daemon, "--name", "uncached", "--log-driver", "gelf", "--log-opt", "gelf-address=" + gelf_udp.address,
        "--log-opt", "cache-disabled=true", "busybox", "echo", "remote only")
    assert gelf_udp.messages(1)[0]["short_message"] == "remote only"
    result = daemon.docker("logs", "uncached", check=False)
    assert result.returncode != 0
    assert "configured logging driver does not support reading" in err(result)


def test_docker_logs_follows_the_cache(daemon, gelf_udp):
    run_detached(daemon, "--name", "followed", "--log-driver", "gelf", "--log-opt",
                 "gelf-address=" + gelf_udp.address, "busybox", "sh", "-c",
                 "echo first; sleep 1; echo second")
    result = daemon.docker("logs", "-f", "followed", timeout=30)
    assert out(result).splitlines() == ["first", "second"]


# -- bad options ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    (["--log-driver", "syslog", "--log-opt", "foo=bar"], "unknown log opt 'foo' for syslog log driver"),
    (["--log-driver", "gelf"], "gelf-address is a required parameter"),
    (["--log-driver", "gelf", "--log-opt", "gelf-address=udp://127.0.0.1:1", "--log-opt", "x=y"],
     'unknown log opt "x" for gelf log driver'),
    (["--log-driver", "fluentd", "--log-opt", "fluentd-retry-wait=soon"], 'time: invalid duration "soon"'),
    (["--log-driver", "journald", "--log-opt", "mode=fast"], "logger: logging mode not supported: fast"),
    (["--log-driver", "syslog", "--log-opt", "max-buffer-size=1m"],
     "logger: max-buffer-size option is only supported with 'mode=non-blocking'"),
    (["--log-driver", "syslog", "--log-opt", "syslog-address=localhost:514"],
     "syslog-address should be in form proto://address, got localhost:514"),
    (["--log-driver", "splunk"], "logger: no log driver named 'splunk' is registered"),
])
def test_bad_log_options_are_refused_at_create(daemon, options, message):
    result = daemon.docker("create", "--name", "refused", *options, "busybox", check=False)
    assert result.returncode != 0 and message in err(result)
    assert daemon.request("GET", "/containers/refused/json").status == 404


# -- the daemon's defaults, and logs while it is down ---------------------------------------------------

def test_daemon_default_log_driver_applies_and_bad_defaults_stop_the_boot(busybox_archive):  # noqa: F811
    receiver = GelfUDP()
    process = start_busybox_daemon(busybox_archive, "--log-driver", "gelf", "--log-opt",
                                  "gelf-address=" + receiver.address, "--log-opt", "cache-max-file=2")
    try:
        run(process, "--name", "defaulted", "busybox", "echo", "by default")
        assert receiver.messages(1)[0]["short_message"] == "by default"
        config = inspect(process, "defaulted")["HostConfig"]["LogConfig"]
        assert config == {"Type": "gelf", "Config": {"gelf-address": receiver.address,
                                                     "cache-max-file": "2"}}
        # cache-* defaults follow a container to any driver (cache.MergeDefaultLogConfig); the
        # gelf-* ones do not.
        run(process, "--name", "other", "--log-driver", "json-file", "busybox", "true")
        assert inspect(process, "other")["HostConfig"]["LogConfig"]["Config"] == {"cache-max-file": "2"}
        info = process.request("GET", "/info").json()
        assert info["LoggingDriver"] == "gelf"
        assert set(info["Plugins"]["Log"]) >= {"fluentd", "gelf", "journald", "json-file", "syslog"}
    finally:
        retire_daemon(process)
        receiver.close()
    assert "unknown log opt 'foo' for syslog log driver" in boot_log_of_a_refused_daemon(
        "--log-driver", "syslog", "--log-opt", "foo=bar")


def test_lines_reach_the_destination_while_the_daemon_is_down(busybox_archive, gelf_udp):  # noqa: F811
    process = start_busybox_daemon(busybox_archive)
    try:
        run_detached(process, "--name", "steady", "--log-driver", "gelf", "--log-opt",
                     "gelf-address=" + gelf_udp.address, "busybox", "sh", "-c",
                     "i=0; while [ $i -lt 60 ]; do echo n$i; i=$((i+1)); sleep 0.05; done")
        gelf_udp.messages(3)
        process.stop(sig=9)
        messages = gelf_udp.messages(60, timeout=30)
        assert [m["short_message"] for m in messages] == ["n%d" % i for i in range(60)]
        process.start()
        wait_until_exited(process, "steady")
        assert logs_of(process, "steady").splitlines() == ["n%d" % i for i in range(60)]
    finally:
        retire_daemon(process)
